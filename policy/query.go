package policy

import (
	"cmp"
	"slices"
	"strings"
)

// RoleInfo is a role with what Conjur shows about it.
type RoleInfo struct {
	Role
	// Members are the role's direct members, the owner's membership
	// included.
	Members []Membership
}

// ResourceInfo is a resource with what Conjur shows about it.
type ResourceInfo struct {
	Resource
	Annotations []Annotation
	Permissions []Permission
	// RestrictedTo is set for users and hosts.
	RestrictedTo []string
}

// ResourceQuery selects resources, as Conjur's resource listing does.
type ResourceQuery struct {
	// Account, when set, limits the listing to one account.
	Account string
	// Kind, when set, limits the listing to one kind.
	Kind string
	// Search, when set, keeps resources whose identifier or annotation
	// values contain every word of it, ignoring case.
	Search string
	// Offset skips that many resources; Limit, when positive, returns at
	// most that many.
	Offset, Limit int
	// Viewer, when set, keeps the resources the role can see: those it
	// owns or holds any privilege on, directly or through its memberships.
	Viewer ID
}

// Role returns the role with id.
func (g *Graph) Role(id ID) (RoleInfo, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	i := g.lookup(id)
	if i == noID || g.nodes[i].role == nil {
		return RoleInfo{}, false
	}
	return RoleInfo{Role: g.roleFact(i), Members: g.members(i)}, true
}

// Resource returns the resource with id.
func (g *Graph) Resource(id ID) (ResourceInfo, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	i := g.lookup(id)
	if i == noID || g.nodes[i].resource == nil {
		return ResourceInfo{}, false
	}
	return g.resourceInfo(i), true
}

func (g *Graph) roleFact(i int32) Role {
	n := g.nodes[i]
	return Role{ID: n.id, PolicyID: g.idOf(n.role.policy), RestrictedTo: slices.Clone(n.role.restrictedTo), PublicKeys: slices.Clone(n.role.publicKeys)}
}

func (g *Graph) resourceFact(i int32) Resource {
	n := g.nodes[i]
	return Resource{ID: n.id, Owner: g.idOf(n.resource.owner), PolicyID: g.idOf(n.resource.policy)}
}

func (g *Graph) resourceInfo(i int32) ResourceInfo {
	n := g.nodes[i]
	info := ResourceInfo{Resource: g.resourceFact(i)}
	for _, a := range n.annots {
		info.Annotations = append(info.Annotations, g.annotationFact(a))
	}
	slices.SortFunc(info.Annotations, func(a, b Annotation) int { return cmp.Compare(a.Name, b.Name) })
	for _, p := range n.perms {
		info.Permissions = append(info.Permissions, g.permissionFact(p))
	}
	slices.SortFunc(info.Permissions, func(a, b Permission) int {
		return cmp.Or(cmp.Compare(a.Privilege, b.Privilege), cmp.Compare(a.Role.String(), b.Role.String()))
	})
	if n.role != nil {
		info.RestrictedTo = slices.Clone(n.role.restrictedTo)
	}
	return info
}

func (g *Graph) membershipFact(m *membership) Membership {
	return Membership{Role: g.idOf(m.role), Member: g.idOf(m.member), AdminOption: m.admin, Ownership: m.ownership, PolicyID: g.idOf(m.policy)}
}

func (g *Graph) permissionFact(p *permission) Permission {
	return Permission{Role: g.idOf(p.role), Privilege: p.privilege, Resource: g.idOf(p.resource), PolicyID: g.idOf(p.policy)}
}

func (g *Graph) annotationFact(a *annotation) Annotation {
	return Annotation{Resource: g.idOf(a.resource), Name: a.name, Value: a.value, PolicyID: g.idOf(a.policy)}
}

func (g *Graph) members(i int32) []Membership {
	out := make([]Membership, 0, len(g.nodes[i].children))
	for _, m := range g.nodes[i].children {
		out = append(out, g.membershipFact(m))
	}
	sortMemberships(out, func(m Membership) ID { return m.Member })
	return out
}

func sortMemberships(ms []Membership, by func(Membership) ID) {
	slices.SortFunc(ms, func(a, b Membership) int {
		return cmp.Or(cmp.Compare(by(a).String(), by(b).String()), cmp.Compare(boolInt(a.Ownership), boolInt(b.Ownership)))
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Members returns the direct members of role (Conjur's ?members), sorted by
// member.
func (g *Graph) Members(role ID) []Membership {
	g.mu.RLock()
	defer g.mu.RUnlock()
	i := g.lookup(role)
	if i == noID {
		return nil
	}
	return g.members(i)
}

// Memberships returns the roles member belongs to directly (Conjur's
// ?memberships), sorted by role.
func (g *Graph) Memberships(member ID) []Membership {
	g.mu.RLock()
	defer g.mu.RUnlock()
	i := g.lookup(member)
	if i == noID {
		return nil
	}
	out := make([]Membership, 0, len(g.nodes[i].parents))
	for _, m := range g.nodes[i].parents {
		out = append(out, g.membershipFact(m))
	}
	sortMemberships(out, func(m Membership) ID { return m.Role })
	return out
}

// AllRoles returns every role role belongs to, transitively, itself
// included (Conjur's ?all), sorted.
func (g *Graph) AllRoles(role ID) []ID {
	g.mu.RLock()
	defer g.mu.RUnlock()
	i := g.lookup(role)
	if i == noID || g.nodes[i].role == nil {
		return nil
	}
	return g.sortedIDs(g.closureOf(i))
}

func (g *Graph) sortedIDs(is []int32) []ID {
	out := make([]ID, len(is))
	for k, i := range is {
		out[k] = g.nodes[i].id
	}
	slices.SortFunc(out, func(a, b ID) int { return cmp.Compare(a.String(), b.String()) })
	return out
}

// PermittedRoles returns every role allowed privilege on resource: the
// owner, the roles permitted it, and all their members, transitively
// (Conjur's ?permitted_roles), sorted.
func (g *Graph) PermittedRoles(privilege string, resource ID) []ID {
	g.mu.RLock()
	defer g.mu.RUnlock()
	res := g.lookup(resource)
	if res == noID || g.nodes[res].resource == nil {
		return nil
	}
	n := g.nodes[res]
	var start []int32
	if n.resource.owner != noID {
		start = append(start, n.resource.owner)
	}
	for _, p := range n.perms {
		if p.privilege == privilege {
			start = append(start, p.role)
		}
	}
	seen := map[int32]bool{}
	var out []int32
	for _, s := range start {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for next := 0; next < len(out); next++ {
		for _, m := range g.nodes[out[next]].children {
			if !seen[m.member] {
				seen[m.member] = true
				out = append(out, m.member)
			}
		}
	}
	out = slices.DeleteFunc(out, func(i int32) bool { return g.nodes[i].role == nil })
	return g.sortedIDs(out)
}

// Visible reports whether viewer can see resource: it owns it or holds any
// privilege on it, directly or through its memberships. Conjur answers 404
// for a resource its caller cannot see.
func (g *Graph) Visible(viewer, resource ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	v, res := g.lookup(viewer), g.lookup(resource)
	if v == noID || res == noID || g.nodes[v].role == nil || g.nodes[res].resource == nil {
		return false
	}
	return g.visible(g.closureOf(v), res)
}

// Resources lists the resources q selects, sorted by id, and how many
// there are before Offset and Limit apply (Conjur's count).
func (g *Graph) Resources(q ResourceQuery) (page []ResourceInfo, count int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var roles []int32
	if !q.Viewer.IsZero() {
		v := g.lookup(q.Viewer)
		if v == noID || g.nodes[v].role == nil {
			return nil, 0
		}
		roles = g.closureOf(v)
	}
	words := strings.Fields(strings.ToLower(q.Search))
	var match []int32
	for i, n := range g.nodes {
		if n.resource == nil || (q.Account != "" && n.id.Account != q.Account) || (q.Kind != "" && n.id.Kind != q.Kind) {
			continue
		}
		if roles != nil && !g.visible(roles, int32(i)) {
			continue
		}
		if len(words) > 0 && !g.matches(n, words) {
			continue
		}
		match = append(match, int32(i))
	}
	slices.SortFunc(match, func(a, b int32) int { return cmp.Compare(g.nodes[a].id.String(), g.nodes[b].id.String()) })
	count = len(match)
	if q.Offset > 0 {
		match = match[min(q.Offset, len(match)):]
	}
	if q.Limit > 0 && len(match) > q.Limit {
		match = match[:q.Limit]
	}
	page = make([]ResourceInfo, len(match))
	for k, i := range match {
		page[k] = g.resourceInfo(i)
	}
	return page, count
}

func (g *Graph) matches(n *node, words []string) bool {
	text := strings.ToLower(n.id.Name)
	for _, a := range n.annots {
		text += "\x00" + strings.ToLower(a.value)
	}
	for _, w := range words {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

// Facts returns every fact in the graph, sorted by key: what a store holds.
func (g *Graph) Facts() []Fact {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.facts(func(int32) bool { return true })
}

// facts returns the facts whose policy passes keep, sorted by key.
func (g *Graph) facts(keep func(policy int32) bool) []Fact {
	out := g.unsortedFacts(keep)
	slices.SortFunc(out, func(a, b Fact) int { return cmp.Compare(a.Key(), b.Key()) })
	return out
}

// unsortedFacts returns the facts whose policy passes keep.
func (g *Graph) unsortedFacts(keep func(policy int32) bool) []Fact {
	var out []Fact
	for i, n := range g.nodes {
		if n.role != nil && keep(n.role.policy) {
			out = append(out, g.roleFact(int32(i)))
		}
		if n.resource != nil && keep(n.resource.policy) {
			out = append(out, g.resourceFact(int32(i)))
		}
	}
	for _, m := range g.memberships {
		if keep(m.policy) {
			out = append(out, g.membershipFact(m))
		}
	}
	for _, p := range g.permissions {
		if keep(p.policy) {
			out = append(out, g.permissionFact(p))
		}
	}
	for _, a := range g.annotations {
		if keep(a.policy) {
			out = append(out, g.annotationFact(a))
		}
	}
	return out
}

// AllowedOnBranch reports whether role may exercise privilege on policy and
// on every resource of its branch: every resource of the account whose
// identifier lies under the policy's ("dev/db" for "dev", "dev/db/x" for
// "dev/db"). This is what Conjur checks before a replace, which may delete
// any of them. As in Conjur, the branch of the root policy is root alone:
// no identifier lies under "root/".
func (g *Graph) AllowedOnBranch(role ID, privilege string, policy ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, p := g.lookup(role), g.lookup(policy)
	if r == noID || p == noID || g.nodes[r].role == nil || g.nodes[p].resource == nil {
		return false
	}
	roles := g.closureOf(r)
	if !g.allowed(roles, privilege, p) {
		return false
	}
	prefix := policy.Name + "/"
	for i, n := range g.nodes {
		if n.resource == nil || n.id.Account != policy.Account || !strings.HasPrefix(n.id.Name, prefix) {
			continue
		}
		if !g.allowed(roles, privilege, int32(i)) {
			return false
		}
	}
	return true
}

// Edge is a membership edge of the role graph: Child is a member of Parent.
type Edge struct {
	Parent, Child ID
}

// RoleGraph returns Conjur's role graph of role: every membership edge on
// the way up from it (the roles it belongs to, transitively) and down (its
// members, transitively), ownership included, whose parent viewer can see,
// each once, sorted by parent then child.
func (g *Graph) RoleGraph(role, viewer ID) []Edge {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, v := g.lookup(role), g.lookup(viewer)
	if r == noID || v == noID || g.nodes[r].role == nil || g.nodes[v].role == nil {
		return nil
	}
	roles := g.closureOf(v)
	type edge struct{ parent, child int32 }
	seen := map[edge]bool{}
	var edges []edge
	walk := func(down bool) {
		visited := map[int32]bool{r: true}
		queue := []int32{r}
		for len(queue) > 0 {
			n := g.nodes[queue[0]]
			queue = queue[1:]
			ms := n.parents
			if down {
				ms = n.children
			}
			for _, m := range ms {
				e := edge{m.role, m.member}
				if !seen[e] {
					seen[e] = true
					edges = append(edges, e)
				}
				next := m.role
				if down {
					next = m.member
				}
				if !visited[next] {
					visited[next] = true
					queue = append(queue, next)
				}
			}
		}
	}
	walk(false)
	walk(true)
	out := make([]Edge, 0, len(edges))
	for _, e := range edges {
		if g.nodes[e.parent].resource == nil || !g.visible(roles, e.parent) {
			continue
		}
		out = append(out, Edge{Parent: g.nodes[e.parent].id, Child: g.nodes[e.child].id})
	}
	slices.SortFunc(out, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.Parent.String(), b.Parent.String()), cmp.Compare(a.Child.String(), b.Child.String()))
	})
	return out
}
