package policy

import "strings"

// Storage keys. A key is a type prefix and the fact's primary key, the same
// columns Conjur's tables use as primary key, each component escaped so that
// '/' only ever separates components:
//
//	role/<role id>
//	resource/<resource id>
//	membership/<role id>/<member id>/<grant|owner>
//	permission/<resource id>/<privilege>/<role id>
//	annotation/<resource id>/<name>
//
// for example "membership/myorg:group:ops/myorg:host:app%2Fweb-01/grant".
// The caller prepends its own prefix (say "/sower/policy/"). Keys are
// stable: a fact keeps its key when its other fields change, which is how
// an update is told apart from a create.
const (
	keyRole       = "role"
	keyResource   = "resource"
	keyMembership = "membership"
	keyPermission = "permission"
	keyAnnotation = "annotation"
)

var keyEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

func escapeKey(s string) string {
	if !strings.ContainsAny(s, "%/") {
		return s
	}
	return keyEscaper.Replace(s)
}

func (f Role) Key() string     { return keyRole + "/" + escapeKey(f.ID.String()) }
func (f Resource) Key() string { return keyResource + "/" + escapeKey(f.ID.String()) }

func (f Membership) Key() string {
	kind := "grant"
	if f.Ownership {
		kind = "owner"
	}
	return keyMembership + "/" + escapeKey(f.Role.String()) + "/" + escapeKey(f.Member.String()) + "/" + kind
}

func (f Permission) Key() string {
	return keyPermission + "/" + escapeKey(f.Resource.String()) + "/" + escapeKey(f.Privilege) + "/" + escapeKey(f.Role.String())
}

func (f Annotation) Key() string {
	return keyAnnotation + "/" + escapeKey(f.Resource.String()) + "/" + escapeKey(f.Name)
}
