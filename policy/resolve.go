package policy

import (
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
)

// ResolveOptions says where a document is loaded.
type ResolveOptions struct {
	// Account is the default account of records that do not name one.
	Account string
	// Owner owns the top-level records that do not name an owner: when
	// loading into the root policy, the root policy's owner.
	Owner ID
}

// Resolved is a resolved policy: a flat, dependency-ordered list of records
// and statements with fully qualified ids, owners and references. Records
// come first, each after the records that own it; statements keep their
// order.
type Resolved struct {
	filename string
	records  []*object
}

// Len returns the number of resolved records and statements.
func (r *Resolved) Len() int { return len(r.records) }

// Dump writes the resolved records in the form of Conjur's resolver
// fixtures.
func (r *Resolved) Dump() []byte {
	items := make([]any, len(r.records))
	for i, o := range r.records {
		items[i] = o
	}
	return dumpItems(items, false)
}

// Resolve resolves a document loaded as the root policy; see LoadRequest for
// loading into another policy. The document is not changed.
func Resolve(doc *Document, opts ResolveOptions) (*Resolved, error) {
	return resolve(doc.Filename, copyItems(doc.stmts), opts)
}

// resolve runs Conjur's resolver passes, in Conjur's order, over stmts,
// which it changes in place.
func resolve(filename string, stmts []any, opts ResolveOptions) (*Resolved, error) {
	if opts.Account == "" {
		return nil, fmt.Errorf("%w: account is required", ErrInvalid)
	}
	if opts.Owner.IsZero() {
		return nil, fmt.Errorf("%w: owner is required", ErrInvalid)
	}
	r := &resolver{filename: filename, opts: opts}
	for _, pass := range []func([]any) error{
		r.accounts,
		r.namespaces,
		r.relativePaths,
		r.userNames,
		r.owners,
	} {
		if err := pass(stmts); err != nil {
			return nil, err
		}
	}
	records, err := r.flatten(stmts)
	if err != nil {
		return nil, err
	}
	if err := r.duplicates(records); err != nil {
		return nil, err
	}
	if err := r.absolute(records); err != nil {
		return nil, err
	}
	return &Resolved{filename: filename, records: records}, nil
}

type resolver struct {
	filename string
	opts     ResolveOptions
	// namespace is the id of the policy whose body is being walked.
	namespace string
	// size is how many objects a walk visited, to size the next one.
	size int
}

// walks numbers walks over documents; a walk marks the objects and lists it
// visits with its number (a resolved document is the resolver's own, see
// Resolve), which is much cheaper than sets of the hundreds of thousands
// of objects a large load has.
var walks atomic.Uint64

// newWalk returns a walk number no object or list is marked with yet.
func newWalk() uint64 { return walks.Add(1) }

func (r *resolver) fail(o *object, format string, args ...any) *Error {
	return objectError(r.filename, o, format, args...)
}

// objectError is an error at an object, in the file it was written in.
func objectError(filename string, o *object, format string, args ...any) *Error {
	if o.file != "" {
		filename = o.file
	}
	return errAt(filename, o.pos, format, args...)
}

// walk visits each statement of a list (flattening nested lists), once per
// object: visit gets the statement, and, unless shallow is set, every record
// it refers to; the body of each policy is walked after the policy, with
// r.namespace set to the policy's id.
func (r *resolver) walk(list []any, shallow bool, visit func(*object) error) error {
	w := &walker{r: r, shallow: shallow, visit: visit, walk: newWalk()}
	err := w.list(list)
	r.size = max(r.size, w.objects)
	return err
}

// walker is one walk over a document.
type walker struct {
	r       *resolver
	shallow bool
	visit   func(*object) error
	// walk marks the objects and lists visited; objects counts them.
	walk    uint64
	objects int
}

func (w *walker) list(list []any) error {
	for _, it := range list {
		switch v := it.(type) {
		case *object:
			if err := w.object(v); err != nil {
				return err
			}
		case *seq:
			// A list reached again through an alias holds objects already
			// visited.
			if v.walked == w.walk {
				continue
			}
			v.walked = w.walk
			if err := w.list(v.items); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *walker) object(o *object) error {
	if o.walked == w.walk {
		return nil
	}
	o.walked = w.walk
	w.objects++
	if err := w.visit(o); err != nil {
		return err
	}
	if !w.shallow {
		for _, a := range o.attrs {
			if a.name == "body" {
				continue
			}
			switch v := a.value.(type) {
			case *object:
				if err := w.object(v); err != nil {
					return err
				}
			case *seq:
				for _, it := range v.items {
					if ref, ok := it.(*object); ok {
						if err := w.object(ref); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	if o.spec.tag == "policy" {
		r := w.r
		saved := r.namespace
		r.namespace = o.str("id")
		err := w.list(items(o.get("body")))
		r.namespace = saved
		if err != nil {
			return err
		}
	}
	return nil
}

// flattenList returns the objects of a list, nested lists flattened. A
// list reached twice through aliases is flattened once: its objects would be
// skipped as visited anyway.
func flattenList(list []any) []*object {
	var (
		out  []*object
		seen = map[*seq]bool{}
		add  func([]any)
	)
	add = func(list []any) {
		for _, it := range list {
			switch v := it.(type) {
			case *object:
				out = append(out, v)
			case *seq:
				if !seen[v] {
					seen[v] = true
					add(v.items)
				}
			}
		}
	}
	add(list)
	return out
}

// references yields the records an object refers to, in attribute order,
// except a policy's body.
func references(o *object) iter.Seq[*object] {
	return func(yield func(*object) bool) {
		for _, a := range o.attrs {
			if a.name == "body" {
				continue
			}
			switch v := a.value.(type) {
			case *object:
				if !yield(v) {
					return
				}
			case *seq:
				for _, it := range v.items {
					if ref, ok := it.(*object); ok && !yield(ref) {
						return
					}
				}
			}
		}
	}
}

// accounts gives every record without an account the default account.
func (r *resolver) accounts(stmts []any) error {
	account := any(r.opts.Account) // made an attribute value once, not per record
	return r.walk(stmts, false, func(o *object) error {
		if o.spec.hasField("account") {
			if v, ok := o.lookup("account"); !ok || v == nil {
				o.set("account", account)
			}
		}
		return nil
	})
}

// namespaces prefixes ids with the enclosing policy's id; a blank id takes
// the policy's id, and an id starting with '/' is left for relativePaths.
func (r *resolver) namespaces(stmts []any) error {
	return r.walk(stmts, false, func(o *object) error {
		if !o.spec.hasField("id") {
			return nil
		}
		id := o.str("id")
		switch {
		case strings.TrimSpace(id) == "":
			if r.namespace == "" {
				return r.fail(o, "%s has a blank id", strings.ReplaceAll(underscore(o.spec.class), "-", "_"))
			}
			id = r.namespace
		case strings.HasPrefix(id, "/") || r.namespace == "":
		default:
			id = r.namespace + "/" + id
		}
		o.set("id", id)
		return nil
	})
}

// relativePaths resolves "/" and ".." where Conjur allows them: in owners,
// the members of grants and revokes, the roles of permits and denies, and
// annotation values.
func (r *resolver) relativePaths(stmts []any) error {
	resolveID := func(ref *object) error {
		if ref == nil || !ref.spec.hasField("id") {
			return nil
		}
		if id, ok := ref.get("id").(string); ok && !strings.HasPrefix(id, "/") && !hasParentSegment(id) {
			return nil // absolutePath would return id as it is
		}
		id, err := absolutePath(ref.str("id"))
		if err != nil {
			return r.fail(ref, "%s", err)
		}
		ref.set("id", id)
		return nil
	}
	return r.walk(stmts, false, func(o *object) error {
		if owner, ok := o.get("owner").(*object); ok && o.spec.hasField("owner") {
			if err := resolveID(owner); err != nil {
				return err
			}
		}
		switch o.spec.class {
		case "Grant":
			for _, m := range items(o.get("member")) {
				if m, ok := m.(*object); ok {
					role, _ := m.get("role").(*object)
					if err := resolveID(role); err != nil {
						return err
					}
				}
			}
		case "Revoke":
			for _, m := range items(o.get("member")) {
				if m, ok := m.(*object); ok {
					if err := resolveID(m); err != nil {
						return err
					}
				}
			}
		case "Permit", "Deny":
			for _, role := range items(o.get("role")) {
				if role, ok := role.(*object); ok {
					if err := resolveID(role); err != nil {
						return err
					}
				}
			}
		}
		if h, ok := o.get("annotations").(*hashValue); ok {
			for i := range h.keys {
				v := scalarText(h.values[i])
				if !hasParentSegment(v) {
					continue
				}
				abs, err := absolutePath(o.str("id") + "/" + v)
				if err != nil {
					return r.fail(o, "%s", err)
				}
				h.values[i] = abs
			}
		}
		return nil
	})
}

// hasParentSegment reports whether a '/'-separated path has a ".." segment.
func hasParentSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// absolutePath strips a leading '/' and removes each ".." with the segment
// before it.
func absolutePath(id string) (string, error) {
	id = strings.TrimPrefix(id, "/")
	tokens := strings.Split(id, "/")
	for {
		i := slices.Index(tokens, "..")
		if i < 0 {
			break
		}
		if i == 0 {
			return "", fmt.Errorf("Invalid relative reference: %s", id)
		}
		tokens = slices.Delete(tokens, i-1, i+1)
	}
	if len(tokens) == 0 {
		return "", fmt.Errorf("Invalid relative reference: %s", id)
	}
	return strings.Join(tokens, "/"), nil
}

// userNames names users by policy: user alice in policy dev/db is
// alice@dev-db.
func (r *resolver) userNames(stmts []any) error {
	return r.walk(stmts, false, func(o *object) error {
		if resourceKind(o) != KindUser || !o.spec.hasField("id") {
			return nil
		}
		id := o.str("id")
		tokens := strings.Split(id, "/")
		if slices.Contains(tokens, "..") {
			return r.fail(o, "Invalid relative reference: %s", id)
		}
		if len(tokens) > 1 {
			id = tokens[len(tokens)-1] + "@" + strings.Join(tokens[:len(tokens)-1], "-")
		}
		o.set("id", id)
		return nil
	})
}

// owners gives each record without an owner its default owner: the owner
// passed in at the top level, the enclosing policy inside a policy body.
func (r *resolver) owners(stmts []any) error {
	var walk func(list []any, owner ID) error
	visited := newWalk()
	walk = func(list []any, owner ID) error {
		ownerRef := roleObject(owner, Position{})
		for _, o := range flattenList(list) {
			if o.walked == visited {
				continue
			}
			o.walked = visited
			if o.spec.hasField("owner") {
				if v, ok := o.lookup("owner"); !ok || v == nil {
					o.set("owner", ownerRef.copyAt(o.pos))
				}
			}
			if o.spec.tag == "policy" {
				body := NewID(o.str("account"), KindPolicy, o.str("id"))
				if err := walk(items(o.get("body")), body); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(stmts, r.opts.Owner)
}

// roleType is the type of !role references.
var roleType = statementTypes["role"]

// roleObject is a !role reference to id.
func roleObject(id ID, pos Position) *object {
	o := newObject(roleType, pos)
	o.set("account", id.Account)
	o.set("id", id.Name)
	o.set("kind", id.Kind)
	return o
}

// flatten lists every record and statement, policy bodies included (and
// removed from their policies), records first, each record after the roles
// it refers to; otherwise in document order.
func (r *resolver) flatten(stmts []any) ([]*object, error) {
	list := make([]*object, 0, r.size)
	err := r.walk(stmts, true, func(o *object) error {
		list = append(list, o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, o := range list {
		if o.spec.tag == "policy" {
			o.unset("body")
		}
	}
	var records, statements []*object
	for _, o := range list {
		if o.spec.record {
			records = append(records, o)
		} else {
			statements = append(statements, o)
		}
	}
	ordered, err := r.dependencyOrder(make([]*object, 0, len(list)), records)
	if err != nil {
		return nil, err
	}
	return append(ordered, statements...), nil
}

// dependencyOrder appends records to out sorted so that a record comes
// after the records whose roles it refers to (its owner, for one), keeping
// document order where nothing else decides.
func (r *resolver) dependencyOrder(out, records []*object) ([]*object, error) {
	index := make(map[string][]int32, len(records)) // role id → records declaring it
	for i, o := range records {
		if id, ok := roleID(o); ok {
			index[id] = append(index[id], int32(i))
		}
	}
	// The records record i must follow are deps[start[i]:start[i+1]]: one
	// flat list rather than a slice per record.
	var (
		deps    = make([]int32, 0, len(records))
		start   = make([]int32, len(records)+1)
		scratch []byte
	)
	for i, o := range records {
		for ref := range references(o) {
			var ok bool
			if scratch, ok = appendRoleID(scratch[:0], ref); !ok {
				continue
			}
			for _, j := range index[string(scratch)] {
				if int(j) != i {
					deps = append(deps, j)
				}
			}
		}
		start[i+1] = int32(len(deps))
	}
	depsOf := func(i int32) []int32 { return deps[start[i]:start[i+1]] }
	for i := range int32(len(records)) {
		for _, j := range depsOf(i) {
			if slices.Contains(depsOf(j), i) {
				a, b := records[min(i, j)], records[max(i, j)]
				return nil, r.fail(a, "Dependency cycle encountered between %s and %s", describe(a, r.opts.Account), describe(b, r.opts.Account))
			}
		}
	}
	// Kahn's algorithm, always taking the earliest record that is ready;
	// a longer cycle is broken at its earliest record.
	pending := make([]int32, len(records)) // unfinished dependencies
	for i := range int32(len(records)) {
		pending[i] = int32(len(depsOf(i)))
	}
	followers, followersOf := invert(deps, start)
	var ready intHeap
	for i := range int32(len(records)) {
		if pending[i] == 0 {
			ready.push(i)
		}
	}
	done := make([]bool, len(records))
	next := int32(0) // every record before next is done
	for placed := len(out) + len(records); len(out) < placed; {
		var pick int32
		if len(ready) > 0 {
			pick = ready.pop()
			if done[pick] {
				continue
			}
		} else {
			for done[next] {
				next++
			}
			pick = next
		}
		done[pick] = true
		out = append(out, records[pick])
		for _, f := range followers[followersOf[pick]:followersOf[pick+1]] {
			pending[f]--
			if pending[f] == 0 && !done[f] {
				ready.push(f)
			}
		}
	}
	return out, nil
}

// invert turns the dependency lists deps[start[i]:start[i+1]] into the
// lists of followers, followers[fstart[j]:fstart[j+1]] listing the records
// that depend on j in the order of deps.
func invert(deps, start []int32) (followers, fstart []int32) {
	fstart = make([]int32, len(start))
	for _, j := range deps {
		fstart[j+1]++
	}
	for j := 1; j < len(fstart); j++ {
		fstart[j] += fstart[j-1]
	}
	followers = make([]int32, len(deps))
	fill := slices.Clone(fstart[:len(fstart)-1])
	for i := range int32(len(start) - 1) {
		for _, j := range deps[start[i]:start[i+1]] {
			followers[fill[j]] = i
			fill[j]++
		}
	}
	return followers, fstart
}

// intHeap is a min-heap of record indexes.
type intHeap []int32

func (h *intHeap) push(x int32) {
	s := append(*h, x)
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
	*h = s
}

func (h *intHeap) pop() int32 {
	s := *h
	x := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		least := i
		if l := 2*i + 1; l < len(s) && s[l] < s[least] {
			least = l
		}
		if r := 2*i + 2; r < len(s) && s[r] < s[least] {
			least = r
		}
		if least == i {
			break
		}
		s[i], s[least] = s[least], s[i]
		i = least
	}
	*h = s
	return x
}

// duplicates rejects a record declared twice.
func (r *resolver) duplicates(records []*object) error {
	seen := make(map[[2]string]bool, len(records))
	for _, o := range records {
		if !o.spec.hasField("id") {
			continue
		}
		key := [2]string{o.spec.class, o.str("id")}
		if seen[key] {
			return r.fail(o, "%s is declared more than once", describe(o, r.opts.Account))
		}
		seen[key] = true
	}
	return nil
}

// absolute rejects an absolute id left where it is not allowed: the id of
// a record, the role of a grant or revoke, the resource of a permit or
// deny, the record of a delete.
func (r *resolver) absolute(records []*object) error {
	for _, o := range records {
		var subjects any = o
		switch o.spec.class {
		case "Grant", "Revoke":
			subjects = o.get("role")
		case "Permit", "Deny":
			subjects = o.get("resource")
		case "Delete":
			subjects = o.get("record")
		}
		for s := range eachItem(subjects) {
			if s, ok := s.(*object); ok {
				if id := s.str("id"); strings.HasPrefix(id, "/") {
					return r.fail(s, "Illegal absolute id: %s", id)
				}
			}
		}
	}
	return nil
}

// checkDeclaredIDs refuses, for a load, the declared ids that Conjur's
// resolver leaves as written but that sower will not store (see badID).
// Resolve itself keeps Conjur's output, "..", for conformance.
func checkDeclaredIDs(filename string, records []*object) error {
	for _, o := range records {
		var subjects any = o
		switch o.spec.class {
		case "Grant", "Revoke":
			subjects = o.get("role")
		case "Permit", "Deny":
			subjects = o.get("resource")
		case "Delete":
			subjects = o.get("record")
		}
		for s := range eachItem(subjects) {
			if s, ok := s.(*object); ok {
				if msg := badID(s.str("id")); msg != "" {
					return objectError(filename, s, "%s", msg)
				}
			}
		}
	}
	return nil
}

// badID says what is wrong with a declared id (the id of a record, the role
// of a grant, the resource of a permit, the record of a delete), or "".
// These ids become etcd keys and URL paths: a NUL or line break would be
// cut or split by the tools that show them, a ".." segment would name
// another record once a path is cleaned, and an encoded slash would name
// another id once a URL is decoded.
func badID(id string) string {
	switch {
	case strings.ContainsRune(id, 0):
		return fmt.Sprintf("Invalid id %q: an id may not contain a NUL character", id)
	case strings.ContainsAny(id, "\n\r"):
		return fmt.Sprintf("Invalid id %q: an id may not contain a line break", id)
	case hasParentSegment(id):
		return fmt.Sprintf("Invalid id %q: '..' may climb only in references (owner, member, the role of a permit), not in a declared id", id)
	case strings.Contains(strings.ToLower(id), "%2f"):
		return fmt.Sprintf("Invalid id %q: an encoded slash (%%2F) would name another id once decoded; write '/' to nest", id)
	}
	return ""
}

// resourceKind is the Conjur kind of the resource an object names, or "".
func resourceKind(o *object) string {
	switch o.spec.tag {
	case "resource":
		return o.str("kind")
	case "role", "automatic-role", "member", "hash":
		return ""
	}
	return o.spec.kind
}

// roleKind is the Conjur kind of the role an object names, or "".
func roleKind(o *object) string {
	switch {
	case !o.spec.role:
		return ""
	case o.spec.tag == "role":
		return o.str("kind")
	}
	return o.spec.kind
}

// roleID is Conjur's roleid, "account:kind:id", of an object that names a
// role.
func roleID(o *object) (string, bool) {
	if !o.spec.role {
		return "", false
	}
	if o.spec.tag == "automatic-role" {
		id, ok := automaticRoleID(o)
		return id.String(), ok
	}
	return o.str("account") + ":" + roleKind(o) + ":" + o.str("id"), true
}

// appendRoleID appends roleID(o), without allocating it when b has room.
func appendRoleID(b []byte, o *object) ([]byte, bool) {
	if !o.spec.role {
		return b, false
	}
	if o.spec.tag == "automatic-role" {
		id, ok := automaticRoleID(o)
		return append(b, id.String()...), ok
	}
	b = append(b, o.str("account")...)
	b = append(b, ':')
	b = append(b, roleKind(o)...)
	b = append(b, ':')
	return append(b, o.str("id")...), true
}

// automaticRoleID is the id of an !automatic-role: "account:@:kind/id/name".
func automaticRoleID(o *object) (ID, bool) {
	rec, ok := o.get("record").(*object)
	if !ok {
		return ID{}, false
	}
	name := roleKind(rec) + "/" + rec.str("id") + "/" + o.str("role_name")
	return NewID(rec.str("account"), "@", name), true
}

// describe names a record in messages as Conjur does: "group 'ops'".
func describe(o *object, account string) string {
	kind := resourceKind(o)
	if kind == "" {
		kind = roleKind(o)
	}
	s := fmt.Sprintf("%s '%s'", strings.ReplaceAll(kind, "_", " "), o.str("id"))
	if a := o.str("account"); a != "" && a != account {
		s += fmt.Sprintf(" in account '%s'", a)
	}
	return s
}

// copyItems deep-copies document values, keeping shared objects shared.
func copyItems(list []any) []any {
	memo := map[any]any{}
	out := make([]any, len(list))
	for i, v := range list {
		out[i] = copyValue(v, memo)
	}
	return out
}

func copyValue(v any, memo map[any]any) any {
	switch v := v.(type) {
	case *object:
		if c, ok := memo[v]; ok {
			return c
		}
		c := &object{spec: v.spec, pos: v.pos, file: v.file, attrs: make([]attr, len(v.attrs))}
		memo[v] = c
		for i, a := range v.attrs {
			c.attrs[i] = attr{a.name, copyValue(a.value, memo)}
		}
		return c
	case *seq:
		if c, ok := memo[v]; ok {
			return c
		}
		c := &seq{items: make([]any, len(v.items))}
		memo[v] = c
		for i, it := range v.items {
			c.items[i] = copyValue(it, memo)
		}
		return c
	case *hashValue:
		if c, ok := memo[v]; ok {
			return c
		}
		c := &hashValue{keys: slices.Clone(v.keys), values: make([]any, len(v.values)), index: maps.Clone(v.index)}
		memo[v] = c
		for i, hv := range v.values {
			c.values[i] = copyValue(hv, memo)
		}
		return c
	}
	return v
}
