package policy

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrStale is returned by Graph.Apply for a ChangeSet planned against an
// older revision of the graph: plan again.
var ErrStale = errors.New("policy: the graph changed since the load was planned; plan it again")

// Graph holds the facts of the permission model in memory and answers
// permission questions from them. The caller keeps it in step with storage:
// Apply a ChangeSet once it is stored, or Put and Delete facts as storage
// reports them (a watch on a Standby). The graph does no cascading of its
// own: deleting a role deletes nothing else; the planner lists everything a
// deletion takes with it.
//
// A Graph is safe for concurrent use. Checks take a read lock; the set of
// roles each role belongs to is computed on first use and cached until a
// membership changes.
type Graph struct {
	mu sync.RWMutex
	// rev counts changes; a ChangeSet remembers the revision it was planned
	// against.
	rev uint64
	// gen counts membership changes; cached closures of another generation
	// are stale.
	gen uint64

	index       map[ID]int32
	nodes       []*node
	memberships map[membershipKey]*membership
	permissions map[permissionKey]*permission
	annotations map[annotationKey]*annotation
}

// node is everything the graph knows about one id.
type node struct {
	id       ID
	role     *roleFact
	resource *resourceFact
	parents  []*membership // memberships of this role in others
	children []*membership // members of this role
	perms    []*permission // permissions on this resource
	grants   []*permission // permissions held by this role
	annots   []*annotation // annotations of this resource
	owns     []int32       // resources this role owns (may hold stale entries)
	closure  atomic.Pointer[closure]
}

type roleFact struct {
	policy       int32
	restrictedTo []string
	publicKeys   []string
}

type resourceFact struct {
	owner  int32
	policy int32
}

type membershipKey struct {
	role, member int32
	ownership    bool
}

type membership struct {
	membershipKey
	admin           bool
	policy          int32
	iParent, iChild int
}

type permissionKey struct {
	resource, role int32
	privilege      string
}

type permission struct {
	permissionKey
	policy      int32
	iRes, iRole int
}

type annotationKey struct {
	resource int32
	name     string
}

type annotation struct {
	annotationKey
	value  string
	policy int32
	i      int
}

// closure is the sorted set of roles a role belongs to, itself included.
type closure struct {
	gen   uint64
	roles []int32
}

const noID = -1

// NewGraph returns a graph holding facts.
func NewGraph(facts ...Fact) *Graph {
	g := &Graph{
		index:       map[ID]int32{},
		memberships: map[membershipKey]*membership{},
		permissions: map[permissionKey]*permission{},
		annotations: map[annotationKey]*annotation{},
	}
	for _, f := range facts {
		g.put(f)
	}
	return g
}

// Revision counts the changes made to the graph.
func (g *Graph) Revision() uint64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.rev
}

// Apply applies a stored ChangeSet: deletions first, then creations and
// updates. It fails with ErrStale, changing nothing, if the graph changed
// since the ChangeSet was planned.
func (g *Graph) Apply(cs *ChangeSet) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cs.Revision != g.rev {
		return fmt.Errorf("%w (planned at revision %d, now %d)", ErrStale, cs.Revision, g.rev)
	}
	for _, f := range cs.Deleted {
		g.delete(f)
	}
	for _, f := range cs.Created {
		g.put(f)
	}
	for _, f := range cs.Updated {
		g.put(f)
	}
	g.rev++
	return nil
}

// Put stores a fact, replacing the fact with the same key.
func (g *Graph) Put(f Fact) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.put(f)
	g.rev++
}

// Delete removes the fact with f's key, if there is one.
func (g *Graph) Delete(f Fact) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.delete(f)
	g.rev++
}

// intern returns id's node index, adding a node if needed. The zero ID is
// noID.
func (g *Graph) intern(id ID) int32 {
	if id.IsZero() {
		return noID
	}
	if i, ok := g.index[id]; ok {
		return i
	}
	i := int32(len(g.nodes))
	g.nodes = append(g.nodes, &node{id: id})
	g.index[id] = i
	return i
}

// lookup returns id's node index, or noID.
func (g *Graph) lookup(id ID) int32 {
	if i, ok := g.index[id]; ok {
		return i
	}
	return noID
}

func (g *Graph) idOf(i int32) ID {
	if i == noID {
		return ID{}
	}
	return g.nodes[i].id
}

func (g *Graph) put(f Fact) {
	switch f := f.(type) {
	case Role:
		n := g.nodes[g.intern(f.ID)]
		n.role = &roleFact{policy: g.intern(f.PolicyID), restrictedTo: slices.Clone(f.RestrictedTo), publicKeys: slices.Clone(f.PublicKeys)}
	case Resource:
		i := g.intern(f.ID)
		owner, policy := g.intern(f.Owner), g.intern(f.PolicyID)
		n := g.nodes[i]
		n.resource = &resourceFact{owner: owner, policy: policy}
		if owner != noID {
			g.nodes[owner].owns = append(g.nodes[owner].owns, i)
		}
	case Membership:
		k := membershipKey{role: g.intern(f.Role), member: g.intern(f.Member), ownership: f.Ownership}
		m, ok := g.memberships[k]
		if !ok {
			m = &membership{membershipKey: k}
			role, member := g.nodes[k.role], g.nodes[k.member]
			m.iChild, m.iParent = len(role.children), len(member.parents)
			role.children = append(role.children, m)
			member.parents = append(member.parents, m)
			g.memberships[k] = m
			g.gen++
		}
		m.admin, m.policy = f.AdminOption, g.intern(f.PolicyID)
	case Permission:
		k := permissionKey{resource: g.intern(f.Resource), role: g.intern(f.Role), privilege: f.Privilege}
		p, ok := g.permissions[k]
		if !ok {
			p = &permission{permissionKey: k}
			res, role := g.nodes[k.resource], g.nodes[k.role]
			p.iRes, p.iRole = len(res.perms), len(role.grants)
			res.perms = append(res.perms, p)
			role.grants = append(role.grants, p)
			g.permissions[k] = p
		}
		p.policy = g.intern(f.PolicyID)
	case Annotation:
		k := annotationKey{resource: g.intern(f.Resource), name: f.Name}
		a, ok := g.annotations[k]
		if !ok {
			a = &annotation{annotationKey: k}
			res := g.nodes[k.resource]
			a.i = len(res.annots)
			res.annots = append(res.annots, a)
			g.annotations[k] = a
		}
		a.value, a.policy = f.Value, g.intern(f.PolicyID)
	}
}

func (g *Graph) delete(f Fact) {
	switch f := f.(type) {
	case Role:
		if i := g.lookup(f.ID); i != noID {
			g.nodes[i].role = nil
		}
	case Resource:
		if i := g.lookup(f.ID); i != noID {
			g.nodes[i].resource = nil
		}
	case Membership:
		k := membershipKey{role: g.lookup(f.Role), member: g.lookup(f.Member), ownership: f.Ownership}
		m, ok := g.memberships[k]
		if !ok {
			return
		}
		delete(g.memberships, k)
		role, member := g.nodes[k.role], g.nodes[k.member]
		role.children = removeAt(role.children, m.iChild, func(x *membership, i int) { x.iChild = i })
		member.parents = removeAt(member.parents, m.iParent, func(x *membership, i int) { x.iParent = i })
		g.gen++
	case Permission:
		k := permissionKey{resource: g.lookup(f.Resource), role: g.lookup(f.Role), privilege: f.Privilege}
		p, ok := g.permissions[k]
		if !ok {
			return
		}
		delete(g.permissions, k)
		res, role := g.nodes[k.resource], g.nodes[k.role]
		res.perms = removeAt(res.perms, p.iRes, func(x *permission, i int) { x.iRes = i })
		role.grants = removeAt(role.grants, p.iRole, func(x *permission, i int) { x.iRole = i })
	case Annotation:
		k := annotationKey{resource: g.lookup(f.Resource), name: f.Name}
		a, ok := g.annotations[k]
		if !ok {
			return
		}
		delete(g.annotations, k)
		res := g.nodes[k.resource]
		res.annots = removeAt(res.annots, a.i, func(x *annotation, i int) { x.i = i })
	}
}

// removeAt removes s[i] by moving the last element into its place, telling
// the moved element its new index.
func removeAt[T any](s []T, i int, moved func(T, int)) []T {
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		moved(s[i], i)
	}
	var zero T
	s[last] = zero
	return s[:last]
}

// closureOf returns the roles role belongs to, transitively, itself
// included, sorted. The caller holds at least the read lock.
func (g *Graph) closureOf(role int32) []int32 {
	n := g.nodes[role]
	if c := n.closure.Load(); c != nil && c.gen == g.gen {
		return c.roles
	}
	seen := map[int32]bool{role: true}
	out := []int32{role}
	for next := 0; next < len(out); next++ {
		for _, m := range g.nodes[out[next]].parents {
			if !seen[m.role] {
				seen[m.role] = true
				out = append(out, m.role)
			}
		}
	}
	slices.Sort(out)
	n.closure.Store(&closure{gen: g.gen, roles: out})
	return out
}

func contains(sorted []int32, x int32) bool {
	if len(sorted) <= 16 {
		return slices.Contains(sorted, x)
	}
	_, found := slices.BinarySearch(sorted, x)
	return found
}

// Allowed reports whether role may exercise privilege on resource: whether
// the role, or a role it belongs to transitively, owns the resource or was
// permitted the privilege on it. Unknown roles and resources are not
// allowed anything.
func (g *Graph) Allowed(role ID, privilege string, resource ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, res := g.lookup(role), g.lookup(resource)
	if r == noID || res == noID || g.nodes[r].role == nil || g.nodes[res].resource == nil {
		return false
	}
	return g.allowed(g.closureOf(r), privilege, res)
}

func (g *Graph) allowed(roles []int32, privilege string, res int32) bool {
	n := g.nodes[res]
	if contains(roles, n.resource.owner) {
		return true
	}
	for _, p := range n.perms {
		if p.privilege == privilege && contains(roles, p.role) {
			return true
		}
	}
	return false
}

// visible reports whether a role that belongs to roles can see a resource:
// it owns it or holds any privilege on it.
func (g *Graph) visible(roles []int32, res int32) bool {
	n := g.nodes[res]
	if contains(roles, n.resource.owner) {
		return true
	}
	for _, p := range n.perms {
		if contains(roles, p.role) {
			return true
		}
	}
	return false
}
