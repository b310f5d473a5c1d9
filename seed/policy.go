package seed

import "github.com/sowerproject/sower/policy"

// GraphPolicy answers the Issuer's questions from the current permission
// graph; Graph is called on every question because the server may replace
// the graph when it reloads from etcd.
type GraphPolicy struct{ Graph func() *policy.Graph }

// Allowed reports whether role holds privilege on resource.
func (p GraphPolicy) Allowed(role, privilege, resource string) bool {
	r, err := policy.ParseID(role)
	if err != nil {
		return false
	}
	res, err := policy.ParseID(resource)
	if err != nil {
		return false
	}
	return p.Graph().Allowed(r, privilege, res)
}

// Annotation returns a resource's annotation.
func (p GraphPolicy) Annotation(resource, name string) (string, bool) {
	id, err := policy.ParseID(resource)
	if err != nil {
		return "", false
	}
	info, ok := p.Graph().Resource(id)
	if !ok {
		return "", false
	}
	for _, a := range info.Annotations {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// IsMember reports whether member belongs to role, transitively.
func (p GraphPolicy) IsMember(role, member string) bool {
	r, err := policy.ParseID(role)
	if err != nil {
		return false
	}
	m, err := policy.ParseID(member)
	if err != nil {
		return false
	}
	for _, x := range p.Graph().AllRoles(m) {
		if x == r {
			return true
		}
	}
	return false
}
