package policy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// PlanAll plans loads one after another, each seeing the effect of those
// before it, and returns their net effect as one ChangeSet: what the graph
// holds after the last load compared with what it holds now. Nothing is
// applied. A fact a load deletes and a later load declares again is no
// change, so a policy repository synced as "replace each node, then append
// its grants and permits" comes out empty when nothing changed, and a
// host deleted and declared again keeps its API key.
//
// ChangeSet.Policies lists the policies loaded, in order, each once; the
// caller gives each a new version. Errors are the failing load's, wrapped
// with its position in reqs.
func (g *Graph) PlanAll(reqs []LoadRequest) (*ChangeSet, error) {
	return g.PlanAllContext(context.Background(), reqs)
}

// PlanAllContext is PlanAll that stops, returning ctx's error, when ctx
// ends.
func (g *Graph) PlanAllContext(ctx context.Context, reqs []LoadRequest) (*ChangeSet, error) {
	g.mu.RLock()
	before := g.unsortedFacts(func(int32) bool { return true })
	rev := g.rev
	g.mu.RUnlock()

	scratch := NewGraph(before...)
	var policies []ID
	for i, req := range reqs {
		cs, err := scratch.PlanContext(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			name := req.Filename
			if name == "" {
				name = "text"
			}
			return nil, fmt.Errorf("load %d of %d (%s into %s, %s): %w", i+1, len(reqs), name, req.Policy, req.Mode, err)
		}
		if err := scratch.Apply(cs); err != nil {
			return nil, err
		}
		if !slices.Contains(policies, req.Policy) {
			policies = append(policies, req.Policy)
		}
	}
	after := scratch.unsortedFacts(func(int32) bool { return true })

	cs := &ChangeSet{Policies: policies, Revision: rev}
	if len(reqs) > 0 {
		cs.Policy, cs.Mode = reqs[0].Policy, reqs[0].Mode
	}
	old := make(map[string]Fact, len(before))
	for _, f := range before {
		old[f.Key()] = f
	}
	for _, f := range after {
		key := f.Key()
		prev, ok := old[key]
		switch {
		case !ok:
			cs.Created = append(cs.Created, f)
			if r, isRole := f.(Role); isRole && (r.ID.Kind == KindUser || r.ID.Kind == KindHost) {
				cs.NewRoles = append(cs.NewRoles, r.ID)
			}
		case !Equal(prev, f):
			cs.Updated = append(cs.Updated, f)
		}
		delete(old, key)
	}
	for _, f := range old {
		cs.Deleted = append(cs.Deleted, f)
		if r, isRole := f.(Role); isRole {
			cs.DeletedRoles = append(cs.DeletedRoles, r.ID)
		}
	}
	byKey := func(a, b Fact) int { return cmp.Compare(a.Key(), b.Key()) }
	byID := func(a, b ID) int { return cmp.Compare(a.String(), b.String()) }
	slices.SortFunc(cs.Created, byKey)
	slices.SortFunc(cs.Updated, byKey)
	slices.SortFunc(cs.Deleted, byKey)
	slices.SortFunc(cs.NewRoles, byID)
	slices.SortFunc(cs.DeletedRoles, byID)
	return cs, nil
}
