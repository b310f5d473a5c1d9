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

// keyBuilder writes a key; keys are built often (every fact a load
// declares), so this avoids the intermediate strings of concatenation.
type keyBuilder struct{ strings.Builder }

// part writes '/' and s, escaped.
func (b *keyBuilder) part(s string) {
	b.WriteByte('/')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case '/':
			b.WriteString("%2F")
		default:
			b.WriteByte(c)
		}
	}
}

// id writes '/' and an escaped ID.
func (b *keyBuilder) id(id ID) {
	b.part(id.Account)
	b.WriteByte(':')
	b.WriteString(escapeKey(id.Kind))
	b.WriteByte(':')
	b.WriteString(escapeKey(id.Name))
}

func escapeKey(s string) string {
	if !strings.ContainsAny(s, "%/") {
		return s
	}
	var b keyBuilder
	b.part(s)
	return b.String()[1:]
}

func newKey(prefix string, size int) *keyBuilder {
	b := &keyBuilder{}
	b.Grow(len(prefix) + size + 8)
	b.WriteString(prefix)
	return b
}

func idLen(id ID) int { return len(id.Account) + len(id.Kind) + len(id.Name) + 3 }

func (f Role) Key() string {
	b := newKey(keyRole, idLen(f.ID))
	b.id(f.ID)
	return b.String()
}

func (f Resource) Key() string {
	b := newKey(keyResource, idLen(f.ID))
	b.id(f.ID)
	return b.String()
}

func (f Membership) Key() string {
	b := newKey(keyMembership, idLen(f.Role)+idLen(f.Member)+6)
	b.id(f.Role)
	b.id(f.Member)
	if f.Ownership {
		b.WriteString("/owner")
	} else {
		b.WriteString("/grant")
	}
	return b.String()
}

func (f Permission) Key() string {
	b := newKey(keyPermission, idLen(f.Resource)+len(f.Privilege)+idLen(f.Role)+1)
	b.id(f.Resource)
	b.part(f.Privilege)
	b.id(f.Role)
	return b.String()
}

func (f Annotation) Key() string {
	b := newKey(keyAnnotation, idLen(f.Resource)+len(f.Name)+1)
	b.id(f.Resource)
	b.part(f.Name)
	return b.String()
}
