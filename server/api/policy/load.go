package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// commitAttempts is how often a load is planned again after another load
// got in first.
const commitAttempts = 3

// LoadPolicy loads policy text into a policy.
func (s *Service) LoadPolicy(ctx context.Context, req *sowerv1.LoadPolicyRequest) (*sowerv1.LoadPolicyResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkAccount(req.GetAccount()); err != nil {
		return nil, err
	}
	mode, err := modeOf(req.GetMode())
	if err != nil {
		return nil, err
	}
	if req.GetIdentifier() == "" {
		return nil, status.Error(codes.InvalidArgument, "name the policy to load into, for example root")
	}
	target := policy.NewID(s.c.Account, policy.KindPolicy, req.GetIdentifier())
	out, err := s.load(ctx, caller, job{
		reqs:   []policy.LoadRequest{{Policy: target, Mode: mode, Filename: req.GetFilename(), Text: []byte(req.GetText())}},
		single: true,
		dryRun: req.GetDryRun(),
		texts:  map[policy.ID]string{target: req.GetText()},
		modes:  map[policy.ID]string{target: mode.String()},
	})
	if err != nil {
		return nil, s.toStatus(ctx, "policy load", err)
	}
	resp := &sowerv1.LoadPolicyResponse{CreatedRoles: out.created, Changes: s.changes(out, req.GetCountsOnly()), Warnings: out.cs.Warnings}
	if len(out.versions) == 1 {
		resp.Version = out.versions[0].Version
	}
	s.c.Logger.InfoContext(ctx, "policy loaded", "policy", target.String(), "mode", mode.String(), "dry_run", req.GetDryRun(),
		"version", resp.Version, "created", len(out.cs.Created), "updated", len(out.cs.Updated), "deleted", len(out.cs.Deleted),
		"by", caller.String(), "peer", rpcctx.PeerAddr(ctx))
	return resp, nil
}

// SyncPolicies applies a sequence of loads as one.
func (s *Service) SyncPolicies(ctx context.Context, req *sowerv1.SyncPoliciesRequest) (*sowerv1.SyncPoliciesResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkAccount(req.GetAccount()); err != nil {
		return nil, err
	}
	if len(req.GetLoads()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "a sync needs at least one load")
	}
	j := job{dryRun: req.GetDryRun(), texts: map[policy.ID]string{}, modes: map[policy.ID]string{}}
	for i, l := range req.GetLoads() {
		mode, err := modeOf(l.GetMode())
		if err != nil {
			return nil, err
		}
		if l.GetIdentifier() == "" || len(l.GetFiles()) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "load %d names no policy or no files", i+1)
		}
		target := policy.NewID(s.c.Account, policy.KindPolicy, l.GetIdentifier())
		lr := policy.LoadRequest{Policy: target, Mode: mode}
		var text strings.Builder
		text.WriteString(j.texts[target])
		var names []string
		for _, f := range l.GetFiles() {
			lr.Files = append(lr.Files, policy.File{Name: f.GetName(), Text: []byte(f.GetText())})
			names = append(names, f.GetName())
		}
		lr.Filename = strings.Join(names, ", ")
		fmt.Fprintf(&text, "# sower policy sync: %s %s\n", mode, lr.Filename)
		for _, f := range l.GetFiles() {
			text.WriteString(f.GetText())
			if !strings.HasSuffix(f.GetText(), "\n") {
				text.WriteByte('\n')
			}
		}
		j.texts[target] = text.String()
		j.modes[target] = "sync"
		j.reqs = append(j.reqs, lr)
	}
	out, err := s.load(ctx, caller, j)
	if err != nil {
		return nil, s.toStatus(ctx, "policy sync", err)
	}
	resp := &sowerv1.SyncPoliciesResponse{CreatedRoles: out.created, Changes: s.changes(out, req.GetCountsOnly())}
	for _, v := range out.versions {
		resp.Versions = append(resp.Versions, &sowerv1.PolicyVersionRef{Policy: v.Policy, Version: v.Version})
	}
	s.c.Logger.InfoContext(ctx, "policies synced", "loads", len(j.reqs), "dry_run", j.dryRun, "policies_versioned", len(out.versions),
		"created", len(out.cs.Created), "updated", len(out.cs.Updated), "deleted", len(out.cs.Deleted),
		"by", caller.String(), "peer", rpcctx.PeerAddr(ctx))
	return resp, nil
}

func modeOf(m sowerv1.LoadMode) (policy.Mode, error) {
	switch m {
	case sowerv1.LoadMode_LOAD_MODE_APPEND:
		return policy.Append, nil
	case sowerv1.LoadMode_LOAD_MODE_UPDATE:
		return policy.Update, nil
	case sowerv1.LoadMode_LOAD_MODE_REPLACE:
		return policy.Replace, nil
	}
	return 0, status.Error(codes.InvalidArgument, "mode: choose append, update or replace")
}

// job is one load or sequence of loads.
type job struct {
	reqs []policy.LoadRequest
	// single is a plain load: versioned even when it changes nothing, as
	// Conjur does. A sync that changes nothing writes nothing.
	single bool
	dryRun bool
	// texts and modes are what each policy's new version records.
	texts map[policy.ID]string
	modes map[policy.ID]string
}

// textBytes is the length of the texts the job loads.
func (j job) textBytes() int {
	n := 0
	for _, r := range j.reqs {
		n += len(r.Text)
	}
	return n
}

// outcome is what a load did.
type outcome struct {
	cs       *policy.ChangeSet
	dryRun   bool
	before   *policy.Graph // the graph planned against
	caller   policy.ID     // who loads: a dry run hides what it cannot see
	created  []*sowerv1.CreatedRole
	versions []etcdstore.PolicyVersion
}

// load authorizes, plans and stores a job.
//
// It holds the node's policy lock for at most Config.LoadTimeout, and stops
// (storing nothing) when the request ends: a client that goes away stops
// costing CPU, and a load waiting for the lock stops waiting.
func (s *Service) load(ctx context.Context, caller policy.ID, j job) (*outcome, error) {
	var out *outcome
	err := s.locked(ctx, func(ctx context.Context) error {
		var err error
		out, err = s.loadLocked(ctx, caller, j)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// locked runs fn holding this node's policy lock, for at most
// Config.LoadTimeout: every write of the permission model (loads, host
// factory hosts) takes it.
func (s *Service) locked(ctx context.Context, fn func(ctx context.Context) error) error {
	select {
	case s.loadLock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.loadLock }()
	ctx, cancel := context.WithTimeoutCause(ctx, s.c.LoadTimeout, ErrLoadTimeout)
	defer cancel()
	err := fn(ctx)
	if err != nil && errors.Is(context.Cause(ctx), ErrLoadTimeout) {
		return fmt.Errorf("%w (%v)", ErrLoadTimeout, err)
	}
	return err
}

func (s *Service) loadLocked(ctx context.Context, caller policy.ID, j job) (*outcome, error) {
	started := time.Now().UTC()
	for attempt := 1; ; attempt++ {
		snap, err := s.c.Store.Begin(ctx)
		if err != nil {
			return nil, err
		}
		g := s.c.Store.Graph()
		if err := authorizeLoads(g, caller, j.reqs); err != nil {
			return nil, err
		}
		if j.single && strings.TrimSpace(string(j.reqs[0].Text)) == "" {
			// Conjur validates the stored version's text after authorizing.
			return nil, validationFailed("the policy text is empty: send the policy YAML as the request body", "policy_text", "is not present")
		}
		var cs *policy.ChangeSet
		if len(j.reqs) == 1 {
			cs, err = g.PlanContext(ctx, j.reqs[0])
		} else {
			cs, err = g.PlanAllContext(ctx, j.reqs)
		}
		if err != nil {
			return nil, err
		}
		out := &outcome{cs: cs, before: g, dryRun: j.dryRun, caller: caller}
		if j.dryRun {
			for _, r := range cs.NewRoles {
				out.created = append(out.created, &sowerv1.CreatedRole{Id: r.String()})
			}
			return out, nil
		}
		if !j.single && cs.Empty() {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		commit := etcdstore.PolicyCommit{ChangeSet: cs}
		for _, r := range cs.NewRoles {
			key, cred, err := s.c.Keys.Prepare(r.String())
			if err != nil {
				return nil, err
			}
			commit.Credentials = append(commit.Credentials, cred)
			out.created = append(out.created, &sowerv1.CreatedRole{Id: r.String(), ApiKey: key})
		}
		for _, pid := range cs.Policies {
			commit.Versions = append(commit.Versions, etcdstore.PolicyVersion{
				Policy: pid.String(), Mode: j.modes[pid], Text: j.texts[pid],
				Role: caller.String(), ClientIP: rpcctx.PeerAddr(ctx), CreatedAt: started,
			})
		}
		out.versions, _, err = s.c.Store.Commit(ctx, snap, commit)
		if errors.Is(err, etcdstore.ErrPolicyConflict) && attempt < commitAttempts {
			s.c.Logger.InfoContext(ctx, "policy load met a concurrent load; planning again", "attempt", attempt)
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(cs.Created)+len(cs.Updated)+len(cs.Deleted) >= largeLoadFacts || j.textBytes() >= largeLoadText {
			releaseMemory()
		}
		return out, nil
	}
}

// A load that changes largeLoadFacts facts, or whose text is
// largeLoadText long (planning it allocates a hundred times that, even
// when nothing changes), is large: afterwards the node hands the memory
// its planning used back to the operating system at once.
const (
	largeLoadFacts = 100_000
	largeLoadText  = 4 << 20
)

var releasing atomic.Bool

// releaseMemory returns the garbage of a large load (its text, plan and
// change set: hundreds of megabytes for 100,000 hosts) to the operating
// system in the background, so that the node's resident memory falls back
// to what it holds instead of staying at the load's peak until Go's
// scavenger gets to it, and the next large load starts from there.
func releaseMemory() {
	if !releasing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer releasing.Store(false)
		debug.FreeOSMemory()
	}()
}

// privilegeFor is the privilege a load mode needs on its policy.
func privilegeFor(m policy.Mode) string {
	if m == policy.Append {
		return "create"
	}
	return "update"
}

// authorizeLoads checks that caller may run every load. When every target
// policy exists already the checks use the current graph; when a load
// targets a policy an earlier load of the sequence declares, the sequence is
// played on a copy of the graph and each load is checked as it would run.
func authorizeLoads(g *policy.Graph, caller policy.ID, reqs []policy.LoadRequest) error {
	sequential := false
	for _, r := range reqs {
		if _, ok := g.Resource(r.Policy); !ok && len(reqs) > 1 {
			sequential = true
			break
		}
		if err := authorizeLoad(g, caller, r); err != nil {
			return err
		}
	}
	if !sequential {
		return nil
	}
	scratch := policy.NewGraph(g.Facts()...)
	for _, r := range reqs {
		if err := authorizeLoad(scratch, caller, r); err != nil {
			return err
		}
		cs, err := scratch.Plan(r)
		if err != nil {
			return err
		}
		if err := scratch.Apply(cs); err != nil {
			return err
		}
	}
	return nil
}

func authorizeLoad(g *policy.Graph, caller policy.ID, r policy.LoadRequest) error {
	if _, ok := g.Resource(r.Policy); !ok || !g.Visible(caller, r.Policy) {
		return status.Errorf(codes.NotFound, "policy %s not found: declare it with !policy in its parent policy first (or check that you may see it)", r.Policy)
	}
	priv := privilegeFor(r.Mode)
	if !g.Allowed(caller, priv, r.Policy) {
		return status.Errorf(codes.PermissionDenied, "%s loads into %s need %s on it", r.Mode, r.Policy, priv)
	}
	// A replace may delete anything under the policy, so it needs the
	// privilege on all of it, as Conjur's ReplacePolicy.authorize does. The
	// message does not name the resource: the caller may not see it.
	if r.Mode == policy.Replace && !g.AllowedOnBranch(caller, priv, r.Policy) {
		return status.Errorf(codes.PermissionDenied,
			"'%s' does not have '%s' privilege on some children of %s: a replace may delete them; ask for %s on the whole branch, or update (PATCH) instead",
			caller, priv, r.Policy, priv)
	}
	return nil
}

// changes converts a change set for the answer.
func (s *Service) changes(out *outcome, countsOnly bool) *sowerv1.PolicyChanges {
	cs := out.cs
	pc := &sowerv1.PolicyChanges{
		CreatedCount: int64(len(cs.Created)), UpdatedCount: int64(len(cs.Updated)), DeletedCount: int64(len(cs.Deleted)),
	}
	if countsOnly {
		return pc
	}
	pc.Created, pc.Updated, pc.Deleted = factsToProto(cs.Created), factsToProto(cs.Updated), factsToProto(cs.Deleted)
	if out.dryRun && !cs.Empty() {
		pc.Records = describeChanges(out.before, cs, out.caller)
	}
	return pc
}

var _ KeyIssuer = (*apikey.Manager)(nil)
