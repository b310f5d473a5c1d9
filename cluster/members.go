package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// JoinsPrefix holds one record per learner the Leader added, until it is
// promoted or removed: /sower/cluster/joins/<member id in hex>.
const JoinsPrefix = "/sower/cluster/joins/"

// DefaultJoinTimeout is how long a learner that the Leader added may take
// to start before the Leader removes it again.
const DefaultJoinTimeout = 2 * time.Minute

type memberPB = etcdserverpb.Member

// joinRecord is what the Leader keeps about a learner it added.
type joinRecord struct {
	Name    string    `json:"name"`
	Host    string    `json:"host,omitempty"`
	SeedID  string    `json:"seed_id,omitempty"`
	AddedAt time.Time `json:"added_at"`
}

func joinKey(id uint64) string { return JoinsPrefix + strconv.FormatUint(id, 16) }

// MembersConfig is what a node's Members needs.
type MembersConfig struct {
	// Local talks to the node's own etcd member (in-process).
	Local *clientv3.Client
	// Remote is a network client of the cluster (TLS, the node's
	// certificate); it asks each member for its status.
	Remote *clientv3.Client
	// Election tells whether this node is the Leader and fences the
	// Leader's writes.
	Election *Election
	// StatusTimeout bounds each member's status request (default 1s).
	StatusTimeout time.Duration
	// JoinTimeout is how long an added learner may take to start
	// (default DefaultJoinTimeout).
	JoinTimeout time.Duration
	// Logger receives membership changes. Nil discards.
	Logger *slog.Logger
}

// Members lists and changes the etcd membership, and runs the Leader's
// membership duties: promoting learners that have caught up, removing
// learners that never started, and keeping raft leadership off the
// Leader's own member.
type Members struct {
	c  MembersConfig
	lg *slog.Logger
}

// NewMembers checks the configuration.
func NewMembers(c MembersConfig) (*Members, error) {
	switch {
	case c.Local == nil:
		return nil, errors.New("cluster: Members needs the local etcd client")
	case c.Remote == nil:
		return nil, errors.New("cluster: Members needs a network etcd client")
	case c.Election == nil:
		return nil, errors.New("cluster: Members needs the Election")
	}
	if c.StatusTimeout == 0 {
		c.StatusTimeout = time.Second
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	lg := c.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Members{c: c, lg: lg}, nil
}

// List returns every member with its status. The membership is this
// member's own view (it answers even without a quorum); each member is
// asked for its status directly, in parallel.
func (m *Members) List(ctx context.Context) ([]Member, error) {
	resp, err := m.c.Local.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("cluster: list members: %w", err)
	}
	leader, known := m.c.Election.Leader()
	out := make([]Member, len(resp.Members))
	var wg sync.WaitGroup
	for i, pm := range resp.Members {
		out[i] = Member{
			ID: pm.ID, Name: pm.Name, Learner: pm.IsLearner,
			PeerURLs: slices.Clone(pm.PeerURLs), ClientURLs: slices.Clone(pm.ClientURLs),
		}
		if len(pm.ClientURLs) == 0 {
			out[i].Err = "never started"
			continue
		}
		wg.Add(1)
		go func(mb *Member) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, m.c.StatusTimeout)
			defer cancel()
			st, err := m.c.Remote.Status(sctx, mb.ClientURLs[0])
			if err != nil {
				mb.Err = "unreachable: " + rpctypes.ErrorDesc(err)
				return
			}
			mb.Reachable = true
			mb.RaftIndex, mb.AppliedIndex, mb.RaftTerm = st.RaftIndex, st.RaftAppliedIndex, st.RaftTerm
			mb.RaftLeader = st.Leader == mb.ID
			mb.DBSize = st.DbSize
			if len(st.Errors) > 0 {
				mb.Err = fmt.Sprint(st.Errors)
			}
		}(&out[i])
	}
	wg.Wait()
	var top uint64
	for _, mb := range out {
		top = max(top, mb.RaftIndex)
	}
	for i := range out {
		mb := &out[i]
		if mb.Reachable && top > mb.AppliedIndex {
			mb.Lag = top - mb.AppliedIndex
		}
		switch {
		case mb.Learner:
			mb.Role = RoleLearner
		case known && mb.ID == leader.MemberID:
			mb.Role = RoleLeader
		case mb.Started():
			mb.Role = RoleStandby
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Role != b.Role {
			return int(a.Role) - int(b.Role)
		}
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// FindMember returns the member named name (or whose hex id is name).
func FindMember(ms []Member, name string) (Member, bool) {
	for _, mb := range ms {
		if mb.Name == name || strconv.FormatUint(mb.ID, 16) == name {
			return mb, true
		}
	}
	return Member{}, false
}

// Promote makes a learner a voting member. etcd refuses a learner that has
// not caught up (ErrLearnerNotReady); the Leader retries by itself.
func (m *Members) Promote(ctx context.Context, id uint64) error {
	if err := m.c.Election.Check(); err != nil {
		return err
	}
	_, err := m.c.Local.MemberPromote(ctx, id)
	switch {
	case err == nil:
	case etcdErrIs(err, rpctypes.ErrGRPCLearnerNotReady):
		return fmt.Errorf("%w: %s", ErrLearnerNotReady, rpctypes.ErrorDesc(err))
	case etcdErrIs(err, rpctypes.ErrGRPCMemberNotLearner):
		return fmt.Errorf("%w: %x", ErrNotLearner, id)
	case etcdErrIs(err, rpctypes.ErrGRPCMemberNotFound):
		return fmt.Errorf("%w: %x", ErrMemberNotFound, id)
	default:
		return fmt.Errorf("cluster: promote member %x: %w", id, err)
	}
	m.forgetJoin(ctx, id)
	return nil
}

// Remove removes a member. Unless force is set it refuses when the
// remaining voters would not hold a reachable quorum, and it never removes
// the Leader (hand the role over first).
func (m *Members) Remove(ctx context.Context, id uint64, force bool) error {
	if err := m.c.Election.Check(); err != nil {
		return err
	}
	ms, err := m.List(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ms, func(mb Member) bool { return mb.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: %x", ErrMemberNotFound, id)
	}
	if ms[i].Role == RoleLeader {
		return fmt.Errorf("%w: %s; hand the role to a Standby first (sower cluster move-leader)", ErrIsLeader, ms[i].Name)
	}
	if !force {
		if err := CheckRemove(ms, id); err != nil {
			return err
		}
	}
	err = retryUnhealthy(ctx, func() error {
		_, err := m.c.Local.MemberRemove(ctx, id)
		return err
	})
	if err != nil {
		if etcdErrIs(err, rpctypes.ErrGRPCMemberNotFound) {
			return fmt.Errorf("%w: %x", ErrMemberNotFound, id)
		}
		return fmt.Errorf("cluster: remove member %s: %w", displayName(ms[i]), err)
	}
	m.lg.Info("removed a member", "name", ms[i].Name, "id", strconv.FormatUint(id, 16), "forced", force)
	m.forgetJoin(ctx, id)
	if ms[i].Name != "" {
		if _, err := m.c.Election.Txn(ctx, nil, []clientv3.Op{clientv3.OpDelete(NodesPrefix + ms[i].Name)}, nil); err != nil {
			m.lg.Warn("delete a removed member's endpoints", "name", ms[i].Name, "err", err)
		}
	}
	return nil
}

// forgetJoin deletes a learner's join record, under the Leader's fence.
func (m *Members) forgetJoin(ctx context.Context, id uint64) {
	if _, err := m.c.Election.Txn(ctx, nil, []clientv3.Op{clientv3.OpDelete(joinKey(id))}, nil); err != nil {
		m.lg.Warn("delete a learner's join record", "id", strconv.FormatUint(id, 16), "err", err)
	}
}

// Run performs the Leader's membership duties twice a second while this
// node is the Leader, until ctx ends.
func (m *Members) Run(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	lastPlace := time.Time{}
	for {
		if m.c.Election.IsLeader() {
			// A pass never blocks the loop for long: promotion is
			// forwarded to the raft leader and may wait on it.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m.tend(pctx)
			if time.Since(lastPlace) > 2*time.Second {
				m.placeRaftLeader(pctx)
				lastPlace = time.Now()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.c.Election.Changed():
		}
	}
}

// tend promotes every learner that has caught up and removes learners that
// did not start within the join timeout.
func (m *Members) tend(ctx context.Context) {
	resp, err := m.c.Local.MemberList(ctx)
	if err != nil {
		return
	}
	for _, pm := range resp.Members {
		if !pm.IsLearner {
			continue
		}
		if pm.Name == "" {
			m.reapIfStale(ctx, pm.ID)
			continue
		}
		err := m.Promote(ctx, pm.ID)
		switch {
		case err == nil:
			m.lg.Info("promoted a learner to voting member", "name", pm.Name, "id", strconv.FormatUint(pm.ID, 16))
		case errors.Is(err, ErrLearnerNotReady), errors.Is(err, ErrNotLeader):
		default:
			m.lg.Warn("promote a learner", "name", pm.Name, "err", err)
		}
	}
	m.cleanJoins(ctx, resp.Members)
}

// reapIfStale removes a learner that was added but never started in time:
// a join that failed on the joining node must not leave the membership
// changed.
func (m *Members) reapIfStale(ctx context.Context, id uint64) {
	resp, err := m.c.Local.Get(ctx, joinKey(id))
	if err != nil {
		return
	}
	var rec joinRecord
	if len(resp.Kvs) == 1 {
		if json.Unmarshal(resp.Kvs[0].Value, &rec) != nil {
			return
		}
	}
	// A learner without a record was not added by a Leader of this
	// cluster (or its record was lost): judge it by the same timeout
	// from now on.
	if len(resp.Kvs) == 0 {
		rec = joinRecord{Name: "?", AddedAt: time.Now().UTC()}
		raw, _ := json.Marshal(rec)
		_, _ = m.c.Election.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(joinKey(id)), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(joinKey(id), string(raw))}, nil)
		return
	}
	if time.Since(rec.AddedAt) < m.c.JoinTimeout {
		return
	}
	if _, err := m.c.Local.MemberRemove(ctx, id); err != nil && !etcdErrIs(err, rpctypes.ErrGRPCMemberNotFound) {
		m.lg.Warn("remove a learner that never started", "name", rec.Name, "err", err)
		return
	}
	m.lg.Warn("removed a learner that never started", "name", rec.Name, "id", strconv.FormatUint(id, 16), "added_at", rec.AddedAt)
	m.forgetJoin(ctx, id)
}

// cleanJoins deletes join records of members that vote or are gone.
func (m *Members) cleanJoins(ctx context.Context, members []*memberPB) {
	resp, err := m.c.Local.Get(ctx, JoinsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	learners := map[string]bool{}
	for _, pm := range members {
		if pm.IsLearner {
			learners[joinKey(pm.ID)] = true
		}
	}
	for _, kv := range resp.Kvs {
		if !learners[string(kv.Key)] {
			_, _ = m.c.Election.Txn(ctx, nil, []clientv3.Op{clientv3.OpDelete(string(kv.Key))}, nil)
		}
	}
}

// placeRaftLeader moves raft leadership from the Leader's own member to a
// reachable, caught-up Standby. Then a Leader that dies costs only its
// lease TTL: had it also led raft, the survivors would first elect a raft
// leader, and etcd extends every lease by an election timeout when raft
// leadership changes.
func (m *Members) placeRaftLeader(ctx context.Context) {
	self := m.c.Election.c.Self.MemberID
	st, err := m.c.Local.Status(ctx, "")
	if err != nil || st.Leader != self {
		return
	}
	ms, err := m.List(ctx)
	if err != nil {
		return
	}
	for _, mb := range ms {
		if mb.ID == self || mb.Learner || !mb.Reachable || mb.Lag > 1000 {
			continue
		}
		if _, err := m.c.Local.MoveLeader(ctx, mb.ID); err != nil {
			m.lg.Debug("move raft leadership", "to", mb.Name, "err", err)
			continue
		}
		m.lg.Info("moved raft leadership to a Standby so that a Leader failure costs only the lease TTL", "to", mb.Name)
		return
	}
}

// unhealthyWait bounds how long a membership change waits for etcd to
// accept it: etcd refuses changes until every voter has been connected to
// the member making the change for five seconds (right after a join, a
// restart or a handoff).
const unhealthyWait = 15 * time.Second

// retryUnhealthy runs a membership change, retrying it while etcd answers
// that the cluster is unhealthy, for up to unhealthyWait; then the error
// wraps ErrUnhealthy.
func retryUnhealthy(ctx context.Context, change func() error) error {
	deadline := time.Now().Add(unhealthyWait)
	for {
		err := change()
		if !etcdErrIs(err, rpctypes.ErrGRPCUnhealthy) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: etcd changes membership only while every voter is connected; bring the unreachable voters back, or remove them first", ErrUnhealthy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// etcdErrIs compares an error from etcd's client (in-process or not) with
// one of etcd's gRPC errors by its description.
func etcdErrIs(err, target error) bool {
	return err != nil && rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(target)
}
