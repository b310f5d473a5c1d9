package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrPolicyNotFound is returned when a load names a policy that does not
// exist.
var ErrPolicyNotFound = errors.New("policy: policy not found")

// LoadRequest is one policy load.
type LoadRequest struct {
	// Policy is the policy loaded into: "myorg:policy:root", or any policy
	// declared before. A load into a policy other than root is wrapped in
	// that policy: its id prefixes relative ids, its role owns the records.
	Policy ID
	Mode   Mode
	// Filename names the text in errors; it may be empty.
	Filename string
	Text     []byte
	// Files, when set, replaces Text: the files' statements are loaded as
	// one text (each file parsed on its own, so anchors stay within a file
	// and errors name the file and its line).
	Files []File
}

// File is one named policy text.
type File struct {
	Name string
	Text []byte
}

// Plan computes what loading req changes, without changing anything: the
// ChangeSet to store (and then Apply), or a dry run's report. It follows
// Conjur's loader:
//
//  1. Update and Replace first apply the text's deletion statements to what
//     exists: !delete removes a record and everything that goes with it,
//     !deny and !revoke remove permissions and grants this policy made.
//     Append rejects them.
//  2. The text's records and statements become facts owned by the policy.
//  3. Replace deletes the facts the policy loaded before that the text no
//     longer declares.
//  4. A fact that another policy loaded is left alone (it is "shadowed"); a
//     fact identical to what exists is no change; Update and Replace update
//     the owner, annotation value, admin option or network restriction of a
//     fact this policy loaded before (Append leaves it); the rest is
//     created.
//
// Deleting a role deletes its memberships, its permissions and the
// resources it owns; deleting a resource deletes its permissions and
// annotations, and deleting a policy deletes everything loaded into it.
// Every role, resource and owner the text refers to must exist afterwards;
// a reference to one that does not is an *Error at the reference.
func (g *Graph) Plan(req LoadRequest) (*ChangeSet, error) {
	return g.PlanContext(context.Background(), req)
}

// PlanContext is Plan that stops, returning ctx's error, when ctx ends: a
// server plans under the request's context so that a client that goes away
// or a load that runs past its time limit stops costing CPU.
func (g *Graph) PlanContext(ctx context.Context, req LoadRequest) (*ChangeSet, error) {
	switch req.Mode {
	case Append, Update, Replace:
	default:
		return nil, fmt.Errorf("policy: invalid load mode %d", req.Mode)
	}
	if req.Policy.Kind != KindPolicy || req.Policy.Account == "" || req.Policy.Name == "" {
		return nil, fmt.Errorf("%w: %q is not a policy id (want account:policy:identifier)", ErrInvalidID, req.Policy)
	}
	files := req.Files
	if len(files) == 0 {
		files = []File{{Name: req.Filename, Text: req.Text}}
	}
	var stmts []any
	for _, f := range files {
		doc, err := parse(ctx, f.Name, f.Text)
		if err != nil {
			return nil, err
		}
		// The documents are Plan's own: they are resolved in place.
		stmts = append(stmts, doc.stmts...)
	}

	g.mu.RLock()
	defer g.mu.RUnlock()
	target := g.lookup(req.Policy)
	if target == noID || g.nodes[target].resource == nil {
		return nil, fmt.Errorf("%w: %s; declare it with !policy in its parent policy first", ErrPolicyNotFound, req.Policy)
	}
	owner := g.idOf(g.nodes[target].resource.owner)
	if req.Policy.Name != RootPolicy {
		wrapper := newObject(statementTypes["policy"], Position{})
		wrapper.set("id", req.Policy.Name)
		wrapper.set("account", req.Policy.Account)
		wrapper.set("owner", roleObject(owner, Position{}))
		wrapper.set("body", &seq{items: stmts})
		stmts = []any{wrapper}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resolved, err := resolve(req.Filename, stmts, ResolveOptions{Account: req.Policy.Account, Owner: owner})
	if err != nil {
		return nil, err
	}
	if err := checkDeclaredIDs(req.Filename, resolved.records); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &planner{
		ctx:      ctx,
		g:        g,
		req:      req,
		deleted:  map[string]bool{},
		newIndex: make(map[string]int, 4*len(resolved.records)),
		declared: make(map[any]struct{}, 4*len(resolved.records)),
		news:     make([]keyed, 0, 4*len(resolved.records)),
	}
	return p.plan(resolved.records)
}

// planner computes one ChangeSet; it reads the graph under its read lock.
type planner struct {
	ctx context.Context
	g   *Graph
	req LoadRequest

	// deleted holds the keys of existing facts the load deletes; dels
	// lists them in order.
	deleted map[string]bool
	dels    []Fact

	// news are the facts the text declares with their keys; newIndex finds
	// them by key.
	news     []keyed
	newIndex map[string]int
	// declared holds the graph entities (*roleFact, *membership …) that
	// the text declares again, for Replace to find the rest.
	declared map[any]struct{}
	// refs are the references to check once deletions are known; needed
	// holds every reference seen (without its object).
	refs   []reference
	needed map[reference]bool
	// lastDeclared is the last reference found declared (if hasLast): most
	// records have the same owner, a grant names its role once per member.
	lastDeclared reference
	hasLast      bool

	// byPolicy indexes existing facts by the policy that loaded them; built
	// when a deleted policy first needs it.
	byPolicy map[int32][]Fact

	// warnNames are the annotation names that are also policy attributes,
	// in the order met.
	warnNames []string

	// killed is what the load's deletion statements delete, if it has any.
	killed *killSet

	// resources counts the resources the text declares: each may bring an
	// ownership membership, so the change set is sized without regrowing.
	resources int
	// scratch is a reused buffer for keys that are only looked up.
	scratch []byte
}

// keyed is a declared fact, its key, and the fact stored under that key
// before the load (nil if none), computed once.
type keyed struct {
	f   Fact
	key string
	cur Fact
}

// reference is a role or resource a declared fact needs.
type reference struct {
	id   ID
	role bool // a role, else a resource
	obj  *object
}

func (p *planner) plan(records []*object) (*ChangeSet, error) {
	for _, o := range records {
		if !o.spec.deletion {
			continue
		}
		if p.req.Mode == Append {
			err := objectError(p.req.Filename, o, "may not contain deletion statements (!%s): appending (POST) only adds; load with update (PATCH) or replace (PUT) to delete", o.spec.tag)
			err.kind = ErrDeletionInAppend
			return nil, err
		}
		p.explicitDeletion(o)
	}
	for i, o := range records {
		if i%ctxEvery == 0 {
			if err := p.ctx.Err(); err != nil {
				return nil, err
			}
		}
		if err := p.declare(o); err != nil {
			return nil, err
		}
	}
	p.dropKilled()
	if p.req.Mode == Replace {
		p.removeUndeclared()
	}
	if err := p.checkReferences(); err != nil {
		return nil, err
	}
	return p.changeSet(), nil
}

// --- existing facts ---------------------------------------------------

// current returns the existing fact with f's key, unless the load deletes
// it.
func (p *planner) current(f Fact) (Fact, bool) {
	if p.isDeleted(f) {
		return nil, false
	}
	return p.stored(f)
}

// isDeleted reports whether the load deletes the existing fact with f's
// key; the key is only looked up, so it is not allocated.
func (p *planner) isDeleted(f Fact) bool {
	if len(p.deleted) == 0 {
		return false
	}
	p.scratch = appendKey(p.scratch[:0], f)
	return p.deleted[string(p.scratch)]
}

// declares reports whether the text declares the role (or the resource)
// id, without allocating its key.
func (p *planner) declares(id ID, role bool) bool {
	if role {
		p.scratch = appendRoleKey(p.scratch[:0], id)
	} else {
		p.scratch = appendResourceKey(p.scratch[:0], id)
	}
	_, ok := p.newIndex[string(p.scratch)]
	return ok
}

// currentKeyed is current for a declared fact, located when declared.
func (p *planner) currentKeyed(k keyed) (Fact, bool) {
	if k.cur == nil || p.deleted[k.key] {
		return nil, false
	}
	return k.cur, true
}

// stored returns the fact stored in the graph under f's key.
func (p *planner) stored(f Fact) (Fact, bool) {
	cur, entity := p.locate(f)
	return cur, entity != nil
}

// locate finds the graph's record of f's key: the stored fact, and the
// graph entity holding it (nil when there is none). The stored fact is f
// itself when the two are equal, which spares copying it into a new
// interface value: a replace that changes nothing finds every fact it
// declares stored as it is.
func (p *planner) locate(f Fact) (Fact, any) {
	g := p.g
	switch x := f.(type) {
	case Role:
		if i := g.lookup(x.ID); i != noID && g.nodes[i].role != nil {
			if cur := g.roleFact(i); !equalRoles(cur, x) {
				return cur, g.nodes[i].role
			}
			return f, g.nodes[i].role
		}
	case Resource:
		if i := g.lookup(x.ID); i != noID && g.nodes[i].resource != nil {
			return storedAs(f, x, g.resourceFact(i)), g.nodes[i].resource
		}
	case Membership:
		if m, ok := g.memberships[membershipKey{role: g.lookup(x.Role), member: g.lookup(x.Member), ownership: x.Ownership}]; ok {
			return storedAs(f, x, g.membershipFact(m)), m
		}
	case Permission:
		if y, ok := g.permissions[permissionKey{resource: g.lookup(x.Resource), role: g.lookup(x.Role), privilege: x.Privilege}]; ok {
			return storedAs(f, x, g.permissionFact(y)), y
		}
	case Annotation:
		if a, ok := g.annotations[annotationKey{resource: g.lookup(x.Resource), name: x.Name}]; ok {
			return storedAs(f, x, g.annotationFact(a)), a
		}
	}
	return nil, nil
}

// storedAs returns f, whose value is x, when the stored fact cur equals it,
// and cur otherwise.
func storedAs[T interface {
	Fact
	comparable
}](f Fact, x, cur T) Fact {
	if x == cur {
		return f
	}
	return cur
}

// remove deletes an existing fact and everything that goes with it.
func (p *planner) remove(f Fact) {
	work := []Fact{f}
	for len(work) > 0 {
		f := work[len(work)-1]
		work = work[:len(work)-1]
		key := f.Key()
		if p.deleted[key] {
			continue
		}
		p.deleted[key] = true
		p.dels = append(p.dels, f)
		work = append(work, p.dependents(f)...)
	}
}

// dependents are the existing facts that cannot outlive f.
func (p *planner) dependents(f Fact) []Fact {
	g := p.g
	var out []Fact
	switch f := f.(type) {
	case Role:
		i := g.lookup(f.ID)
		if i == noID {
			return nil
		}
		n := g.nodes[i]
		for _, m := range n.children {
			out = append(out, g.membershipFact(m))
		}
		for _, m := range n.parents {
			out = append(out, g.membershipFact(m))
		}
		for _, x := range n.grants {
			out = append(out, g.permissionFact(x))
		}
		for _, r := range n.owns {
			if res := g.nodes[r].resource; res != nil && res.owner == i {
				out = append(out, g.resourceFact(r))
			}
		}
	case Resource:
		i := g.lookup(f.ID)
		if i == noID {
			return nil
		}
		n := g.nodes[i]
		for _, x := range n.perms {
			out = append(out, g.permissionFact(x))
		}
		for _, a := range n.annots {
			out = append(out, g.annotationFact(a))
		}
		if f.ID.Kind == KindPolicy {
			out = append(out, p.loadedBy(i)...)
		}
	}
	return out
}

// loadedBy returns the existing facts the policy with node index i loaded.
func (p *planner) loadedBy(i int32) []Fact {
	if p.byPolicy == nil {
		p.byPolicy = map[int32][]Fact{}
		for _, f := range p.g.unsortedFacts(func(policy int32) bool { return policy != noID }) {
			pi := p.g.lookup(f.Policy())
			p.byPolicy[pi] = append(p.byPolicy[pi], f)
		}
	}
	return p.byPolicy[i]
}

// --- deletion statements ----------------------------------------------

// explicitDeletion applies a !delete, !deny or !revoke to existing facts.
// What does not exist is ignored, as Conjur does; !deny and !revoke only
// remove what this policy loaded.
func (p *planner) explicitDeletion(o *object) {
	p.kill(o)
	ours := func(f Fact) (Fact, bool) {
		cur, ok := p.current(f)
		return cur, ok && cur.Policy() == p.req.Policy
	}
	switch o.spec.class {
	case "Deny":
		for _, res := range objects(o.get("resource")) {
			for _, priv := range items(o.get("privilege")) {
				for _, role := range objects(o.get("role")) {
					f := Permission{Role: roleRef(role), Privilege: scalarText(priv), Resource: resourceRef(res)}
					if cur, ok := ours(f); ok {
						p.remove(cur)
					}
				}
			}
		}
	case "Revoke":
		for _, role := range objects(o.get("role")) {
			for _, member := range objects(o.get("member")) {
				f := Membership{Role: roleRef(role), Member: roleRef(member)}
				if cur, ok := ours(f); ok {
					p.remove(cur)
				}
			}
		}
	case "Delete":
		for _, rec := range objects(o.get("record")) {
			if resourceKind(rec) != "" {
				if cur, ok := p.current(Resource{ID: resourceRef(rec)}); ok {
					p.remove(cur)
				}
			}
			if rec.spec.role {
				if cur, ok := p.current(Role{ID: roleRef(rec)}); ok {
					p.remove(cur)
				}
			}
		}
	}
}

// kill notes what a deletion statement deletes, existing or not: a fact
// the same load also declares is deleted in the end, as in Conjur, where
// the deletions of a load win over its declarations.
func (p *planner) kill(o *object) {
	if p.killed == nil {
		p.killed = &killSet{keys: map[string]bool{}, roles: map[ID]bool{}, resources: map[ID]bool{}}
	}
	k := p.killed
	switch o.spec.class {
	case "Deny":
		for _, res := range objects(o.get("resource")) {
			for _, priv := range items(o.get("privilege")) {
				for _, role := range objects(o.get("role")) {
					k.keys[Permission{Role: roleRef(role), Privilege: scalarText(priv), Resource: resourceRef(res)}.Key()] = true
				}
			}
		}
	case "Revoke":
		for _, role := range objects(o.get("role")) {
			for _, member := range objects(o.get("member")) {
				k.keys[Membership{Role: roleRef(role), Member: roleRef(member)}.Key()] = true
			}
		}
	case "Delete":
		for _, rec := range objects(o.get("record")) {
			if resourceKind(rec) != "" {
				k.resources[resourceRef(rec)] = true
			}
			if rec.spec.role {
				k.roles[roleRef(rec)] = true
			}
		}
	}
}

// killSet is what a load's deletion statements delete.
type killSet struct {
	keys      map[string]bool // permissions and memberships, by key
	roles     map[ID]bool
	resources map[ID]bool
}

// dropKilled takes out of the declared facts those the load's deletion
// statements delete, and what cannot exist without them: the annotations,
// permissions and memberships of a deleted record, and the resources a
// deleted role owns (and theirs in turn).
func (p *planner) dropKilled() {
	k := p.killed
	if k == nil || len(p.news) == 0 {
		return
	}
	for grew := true; grew; {
		grew = false
		for _, n := range p.news {
			if res, ok := n.f.(Resource); ok && !k.resources[res.ID] && k.roles[res.Owner] {
				k.resources[res.ID] = true
				grew = true
			}
		}
	}
	dead := func(f Fact) bool {
		switch f := f.(type) {
		case Role:
			return k.roles[f.ID]
		case Resource:
			return k.resources[f.ID]
		case Membership:
			return k.roles[f.Role] || k.roles[f.Member] || (!f.Ownership && k.keys[Membership{Role: f.Role, Member: f.Member}.Key()])
		case Permission:
			return k.roles[f.Role] || k.resources[f.Resource] || k.keys[Permission{Role: f.Role, Privilege: f.Privilege, Resource: f.Resource}.Key()]
		case Annotation:
			return k.resources[f.Resource]
		}
		return false
	}
	kept := p.news[:0]
	for _, n := range p.news {
		if dead(n.f) {
			if _, entity := p.locate(n.f); entity != nil {
				delete(p.declared, entity)
			}
			if _, ok := n.f.(Resource); ok {
				p.resources--
			}
			continue
		}
		kept = append(kept, n)
	}
	if len(kept) == len(p.news) {
		return
	}
	p.news = kept
	clear(p.newIndex)
	for i, n := range p.news {
		p.newIndex[n.key] = i
	}
}

// removeUndeclared deletes the facts this policy loaded before that the
// text no longer declares. Ownership memberships follow their resource and
// are not compared.
func (p *planner) removeUndeclared() {
	g := p.g
	policy := g.lookup(p.req.Policy)
	var gone []Fact
	undeclared := func(entity any) bool {
		_, declared := p.declared[entity]
		return !declared
	}
	for i, n := range g.nodes {
		if n.role != nil && n.role.policy == policy && undeclared(n.role) {
			gone = append(gone, g.roleFact(int32(i)))
		}
		if n.resource != nil && n.resource.policy == policy && undeclared(n.resource) {
			gone = append(gone, g.resourceFact(int32(i)))
		}
	}
	for _, m := range g.memberships {
		if m.policy == policy && !m.ownership && undeclared(m) {
			gone = append(gone, g.membershipFact(m))
		}
	}
	for _, x := range g.permissions {
		if x.policy == policy && undeclared(x) {
			gone = append(gone, g.permissionFact(x))
		}
	}
	for _, a := range g.annotations {
		if a.policy == policy && undeclared(a) {
			gone = append(gone, g.annotationFact(a))
		}
	}
	// Deterministic order, for reproducible change sets.
	slices.SortFunc(gone, func(a, b Fact) int { return cmp.Compare(a.Key(), b.Key()) })
	for _, f := range gone {
		p.remove(f)
	}
}

// --- declarations -----------------------------------------------------

func objects(v any) []*object {
	var out []*object
	for _, it := range items(v) {
		if o, ok := it.(*object); ok {
			out = append(out, o)
		}
	}
	return out
}

// roleRef is the id of the role an object names.
func roleRef(o *object) ID {
	if o.spec.tag == "automatic-role" {
		id, _ := automaticRoleID(o)
		return id
	}
	return NewID(o.str("account"), roleKind(o), o.str("id"))
}

// resourceRef is the id of the resource an object names.
func resourceRef(o *object) ID {
	return NewID(o.str("account"), resourceKind(o), o.str("id"))
}

// add records a fact the text declares; the first declaration of a key
// wins, except that a grant with admin option supersedes one without.
func (p *planner) add(f Fact) {
	key := f.Key()
	if i, ok := p.newIndex[key]; ok {
		if m, isMembership := f.(Membership); isMembership && m.AdminOption {
			p.news[i].f = f
		}
		return
	}
	cur, entity := p.locate(f)
	if entity != nil {
		p.declared[entity] = struct{}{}
	}
	if _, ok := f.(Resource); ok {
		p.resources++
	}
	p.newIndex[key] = len(p.news)
	p.news = append(p.news, keyed{f: f, key: key, cur: cur})
}

// need records a reference to check once deletions are known. Records come
// before statements in a resolved load, and owners before what they own, so
// a reference to something the load declares is already declared here (and
// stays declared: it needs no check, nor a place in needed).
func (p *planner) need(id ID, role bool, o *object) {
	ref := reference{id: id, role: role}
	if p.hasLast && ref == p.lastDeclared {
		return
	}
	if p.declares(id, role) {
		p.lastDeclared, p.hasLast = ref, true
		return
	}
	if p.needed[ref] {
		return
	}
	if p.needed == nil {
		p.needed = map[reference]bool{}
	}
	p.needed[ref] = true
	ref.obj = o
	p.refs = append(p.refs, ref)
}

// declare turns a resolved record or statement into facts.
func (p *planner) declare(o *object) error {
	policy := p.req.Policy
	switch o.spec.class {
	case "Grant":
		for _, role := range objects(o.get("role")) {
			for _, m := range objects(o.get("member")) {
				member, _ := m.get("role").(*object)
				if member == nil {
					return objectError(p.req.Filename, m, "!member has no role")
				}
				admin, _ := m.get("admin").(bool)
				f := Membership{Role: roleRef(role), Member: roleRef(member), AdminOption: admin, PolicyID: policy}
				p.need(f.Role, true, role)
				p.need(f.Member, true, member)
				p.add(f)
			}
		}
		return nil
	case "Permit":
		for _, res := range objects(o.get("resource")) {
			for _, priv := range items(o.get("privilege")) {
				for _, role := range objects(o.get("role")) {
					f := Permission{Role: roleRef(role), Privilege: scalarText(priv), Resource: resourceRef(res), PolicyID: policy}
					if f.Privilege == "" {
						return objectError(p.req.Filename, o, "!permit has an empty privilege")
					}
					p.need(f.Role, true, role)
					p.need(f.Resource, false, res)
					p.add(f)
				}
			}
		}
		return nil
	}
	if !o.spec.record {
		return nil
	}
	account, name := o.str("account"), o.str("id")
	if o.spec.role {
		kind := roleKind(o)
		if kind == "" {
			return objectError(p.req.Filename, o, "role '%s' has no kind: give !role a kind", name)
		}
		var cidrs []string
		for _, c := range items(o.get("restricted_to")) {
			cidrs = append(cidrs, scalarText(c))
		}
		if len(cidrs) > 0 {
			cidrs = unionCIDRs(nil, cidrs)
		}
		p.add(Role{ID: NewID(account, kind, name), PolicyID: policy, RestrictedTo: cidrs, PublicKeys: publicKeys(o)})
	}
	if !o.spec.resource {
		return nil
	}
	kind := resourceKind(o)
	if kind == "" {
		return objectError(p.req.Filename, o, "resource '%s' has no kind: give !resource a kind", name)
	}
	id := NewID(account, kind, name)
	ownerObj, _ := o.get("owner").(*object)
	if ownerObj == nil {
		return objectError(p.req.Filename, o, "%s has no owner", describe(o, account))
	}
	res := Resource{ID: id, Owner: roleRef(ownerObj), PolicyID: policy}
	p.need(res.Owner, true, ownerObj)
	p.add(res)

	annotations, err := p.annotations(o)
	if err != nil {
		return err
	}
	for _, a := range annotations {
		a.Resource, a.PolicyID = id, policy
		p.add(a)
	}
	if o.spec.tag == "host-factory" {
		layers := objects(o.get("layer"))
		if len(layers) == 0 {
			return objectError(p.req.Filename, o, "Host factory '%s' does not include any layers", name)
		}
		for _, l := range layers {
			f := Membership{Role: roleRef(l), Member: id, PolicyID: policy}
			p.need(f.Role, true, l)
			p.add(f)
		}
	}
	return nil
}

// knownPolicyAttributes are the names Conjur warns about when an annotation
// takes one (its PoliciesController::KNOWN_POLICY_ATTRIBUTES): the author
// may have meant the attribute.
var knownPolicyAttributes = map[string]bool{
	"id": true, "owner": true, "body": true, "user": true, "annotations": true, "restricted_to": true,
	"permit": true, "deny": true, "role": true, "privileges": true, "resource": true, "grant": true,
	"revoke": true, "member": true, "host-factory": true, "layers": true, "layer": true, "variable": true,
	"kind": true, "mime_type": true, "delete": true, "record": true, "group": true, "host": true, "webservice": true,
}

// customAnnotations are the attributes Conjur stores as annotations, unless
// an annotation of that name is given.
var customAnnotations = map[string][][2]string{
	"variable": {{"kind", "conjur/kind"}, {"mime_type", "conjur/mime_type"}},
	"user":     {{"uidnumber", "conjur/uidnumber"}},
	"group":    {{"gidnumber", "conjur/gidnumber"}},
}

func (p *planner) annotations(o *object) ([]Annotation, error) {
	h, _ := o.get("annotations").(*hashValue)
	custom := customAnnotations[o.spec.tag]
	var out []Annotation
	if h != nil {
		out = make([]Annotation, 0, len(h.keys)+len(custom))
		for i, k := range h.keys {
			v := h.values[i]
			if s, isSeq := v.(*seq); isSeq {
				for _, it := range s.items {
					switch it.(type) {
					case *seq, *object, *hashValue:
						return nil, objectError(p.req.Filename, o, "annotation '%s': a value is a scalar or a list of scalars", k)
					}
				}
			}
			if _, isObject := v.(*object); isObject {
				return nil, objectError(p.req.Filename, o, "annotation '%s': a value is a scalar or a list of scalars", k)
			}
			out = append(out, Annotation{Name: k, Value: scalarText(v)})
			if knownPolicyAttributes[k] && !slices.Contains(p.warnNames, k) {
				p.warnNames = append(p.warnNames, k)
			}
		}
	}
	for _, c := range custom {
		if v := o.get(c[0]); v != nil && (h == nil || h.find(c[1]) < 0) {
			out = append(out, Annotation{Name: c[1], Value: scalarText(v)})
		}
	}
	for _, a := range out {
		if len(a.Name)+len(a.Value) > MaxAnnotationBytes {
			return nil, objectError(p.req.Filename, o, "annotation '%s' is %d bytes; the limit is %d bytes (MaxAnnotationBytes: each annotation is one etcd value, and etcd refuses a request over its limit): keep large data in a variable", clip(a.Name, 64), len(a.Name)+len(a.Value), MaxAnnotationBytes)
		}
	}
	return out, nil
}

// MaxAnnotationBytes bounds an annotation's name and value together. Each
// annotation is one value in etcd, whose requests are limited (8 MiB on a
// sower node, with every other write of the load's transaction); 1 MiB
// keeps a load of such annotations well inside it.
const MaxAnnotationBytes = 1 << 20

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// checkReferences fails on the first reference to a role or resource that
// neither the text declares nor exists after the load's deletions.
func (p *planner) checkReferences() error {
	for _, r := range p.refs {
		if p.declares(r.id, r.role) {
			continue
		}
		var f Fact = Resource{ID: r.id}
		if r.role {
			f = Role{ID: r.id}
		}
		if _, exists := p.current(f); exists {
			continue
		}
		what := describe(r.obj, p.req.Policy.Account)
		if p.isDeleted(f) {
			return objectError(p.req.Filename, r.obj, "%s is deleted by this load but still referenced here", what)
		}
		// Conjur's words (its RecordNotFound): the kind capitalised, the
		// full identifier, the account.
		return objectError(p.req.Filename, r.obj, "%s '%s' not found in account '%s'", capitalize(r.id.Kind), r.id.Name, r.id.Account)
	}
	return nil
}

// --- the change set ---------------------------------------------------

// changeSet sorts the declared facts into created, updated and unchanged,
// adds the ownership memberships that follow owners, and folds a fact both
// deleted and written into one update.
func (p *planner) changeSet() *ChangeSet {
	cs := &ChangeSet{Policy: p.req.Policy, Mode: p.req.Mode, Policies: []ID{p.req.Policy}, Revision: p.g.rev}
	// A declared resource that is written may bring its ownership
	// membership: p.resources bounds the derived facts.
	var (
		writes  = make([]keyed, 0, len(p.news)+p.resources) // facts to put that do not exist (or are deleted above)
		updated []Fact
		derived = make([]keyed, 0, p.resources)
	)
	classify := func(k keyed) (written bool) {
		cur, exists := p.currentKeyed(k)
		if exists && p.req.Mode == Update && cur.Policy() == k.f.Policy() {
			k.f = keepPublicKeys(cur, k.f)
		}
		switch {
		case !exists:
			writes = append(writes, k)
			return true
		case cur.Policy() != k.f.Policy():
			// Another policy loaded it: shadowed, left alone.
		case Equal(cur, k.f):
		case p.req.Mode == Append:
			// Append changes nothing that exists, but for what Conjur
			// extends: the networks of a user or host gain the new ones.
			if r, ok := k.f.(Role); ok && len(r.RestrictedTo) > 0 {
				c := cur.(Role)
				if u := unionCIDRs(c.RestrictedTo, r.RestrictedTo); !slices.Equal(u, c.RestrictedTo) {
					c.RestrictedTo = u
					updated = append(updated, c)
				}
			}
			// and a user's public keys gain the new ones, as Conjur's
			// append adds public_key resources and deletes none.
			if r, ok := k.f.(Role); ok && len(r.PublicKeys) > 0 {
				c := cur.(Role)
				if u := unionKeys(c.PublicKeys, r.PublicKeys); !slices.Equal(u, c.PublicKeys) {
					if n := len(updated); n > 0 && updated[n-1].Key() == c.Key() {
						c = updated[n-1].(Role) // restricted_to grew too
						updated = updated[:n-1]
					}
					c.PublicKeys = u
					updated = append(updated, c)
				}
			}
		default:
			updated = append(updated, k.f)
			if res, ok := k.f.(Resource); ok && cur.(Resource).Owner != res.Owner {
				// The ownership membership moves with the owner.
				if om, ok := p.current(Membership{Role: res.ID, Member: cur.(Resource).Owner, Ownership: true}); ok {
					p.remove(om)
				}
				return true
			}
		}
		return false
	}
	for _, k := range p.news {
		if classify(k) {
			if res, ok := k.f.(Resource); ok && p.isRole(res.ID) {
				var om Fact = ownership(res)
				cur, _ := p.locate(om)
				derived = append(derived, keyed{f: om, key: om.Key(), cur: cur})
			}
		}
	}
	for _, k := range derived {
		classify(k)
	}

	// A key both deleted and written is one update in the transaction
	// (etcd refuses two operations on one key in a transaction).
	var folded map[string]bool
	if len(p.dels) > 0 {
		pending := make(map[string]Fact, len(writes))
		for _, k := range writes {
			pending[k.key] = k.f
		}
		folded = map[string]bool{}
		for _, f := range p.dels {
			key := f.Key()
			if nf, ok := pending[key]; ok {
				if !Equal(nf, f) {
					cs.Updated = append(cs.Updated, nf)
				}
				folded[key] = true
				continue
			}
			cs.Deleted = append(cs.Deleted, f)
			if r, ok := f.(Role); ok {
				cs.DeletedRoles = append(cs.DeletedRoles, r.ID)
			}
		}
	}
	cs.Created = make([]Fact, 0, len(writes))
	if n := countNewRoles(writes); n > 0 {
		cs.NewRoles = make([]ID, 0, n)
	}
	for _, k := range writes {
		if folded[k.key] {
			continue
		}
		cs.Created = append(cs.Created, k.f)
		if r, ok := k.f.(Role); ok && (r.ID.Kind == KindUser || r.ID.Kind == KindHost) {
			cs.NewRoles = append(cs.NewRoles, r.ID)
		}
	}
	cs.Updated = append(cs.Updated, updated...)
	for _, n := range p.warnNames {
		cs.Warnings = append(cs.Warnings, fmt.Sprintf("Annotation '%s' matches a known policy attribute. This annotation will not be treated as a standard attribute and may not have the intended effect.", n))
	}
	return cs
}

// countNewRoles counts the users and hosts among writes, to size
// ChangeSet.NewRoles.
func countNewRoles(writes []keyed) int {
	n := 0
	for _, k := range writes {
		if r, ok := k.f.(Role); ok && (r.ID.Kind == KindUser || r.ID.Kind == KindHost) {
			n++
		}
	}
	return n
}

// isRole reports whether id will be a role after the load.
func (p *planner) isRole(id ID) bool {
	if p.declares(id, true) {
		return true
	}
	i := p.g.lookup(id)
	return i != noID && p.g.nodes[i].role != nil && !p.isDeleted(Role{ID: id})
}

// ownership is the membership that makes a resource's owner a member, with
// admin option, of the role of the same id.
func ownership(r Resource) Membership {
	return Membership{Role: r.ID, Member: r.Owner, AdminOption: true, Ownership: true, PolicyID: r.PolicyID}
}

// ErrAccountExists is returned by PlanAccount for an account that has a
// root policy already.
var ErrAccountExists = errors.New("policy: account exists")

// AdminUser is the identifier of the user who owns an account's root
// policy.
const AdminUser = "admin"

// PlanAccount plans the creation of an account: its admin user and its root
// policy, owned by the admin. NewRoles holds the admin, whose API key the
// caller issues.
func (g *Graph) PlanAccount(account string) (*ChangeSet, error) {
	if account == "" || strings.ContainsAny(account, ":/") {
		return nil, fmt.Errorf("%w: account %q: want a name without ':' or '/'", ErrInvalidID, account)
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	admin := NewID(account, KindUser, AdminUser)
	root := NewID(account, KindPolicy, RootPolicy)
	if i := g.lookup(root); i != noID && g.nodes[i].resource != nil {
		return nil, fmt.Errorf("%w: %s", ErrAccountExists, account)
	}
	rootResource := Resource{ID: root, Owner: admin}
	return &ChangeSet{
		Policy:   root,
		Mode:     Append,
		Policies: []ID{root},
		Created: []Fact{
			Role{ID: admin},
			Resource{ID: admin, Owner: admin},
			Role{ID: root},
			rootResource,
			ownership(rootResource),
		},
		NewRoles: []ID{admin},
		Revision: g.rev,
	}, nil
}

// capitalize upper-cases the first letter, as Ruby's String#capitalize does
// for Conjur's kinds.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
