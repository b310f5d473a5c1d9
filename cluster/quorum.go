package cluster

import (
	"fmt"
	"slices"
	"strings"
)

// Member is one etcd member as sower reports it.
type Member struct {
	ID         uint64
	Name       string // empty until the member has started once
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
	// Role is leader, standby or learner (RoleUnknown for a member that
	// never started).
	Role Role
	// Reachable is whether the member answered a status request; Err says
	// why not.
	Reachable bool
	Err       string
	// RaftIndex is the member's committed raft index, AppliedIndex the
	// last one it applied, Lag how far AppliedIndex is behind the highest
	// committed index any member reported.
	RaftIndex    uint64
	AppliedIndex uint64
	RaftTerm     uint64
	Lag          uint64
	RaftLeader   bool // the member leads raft (not necessarily sower's Leader)
	DBSize       int64
}

// Started reports whether the member has ever run (etcd learns a member's
// name when it first starts).
func (m Member) Started() bool { return m.Name != "" }

// Health is the fault tolerance of the quorum and what an operator should
// know about it.
type Health struct {
	Voters        int
	HealthyVoters int
	Learners      int
	// Quorum is how many voters must agree on a write.
	Quorum int
	// FaultTolerance is how many voters may fail with writes still
	// possible, by design ((voters-1)/2).
	FaultTolerance int
	// Remaining is how many more voters may fail now, given the ones that
	// are already unreachable; negative when the quorum is lost.
	Remaining int
	HasQuorum bool
	// Warnings are sentences for an operator, most serious first.
	Warnings []string
}

// Assess computes the quorum's health from the member list and the Leader.
func Assess(ms []Member, leader Leader, leaderKnown bool) Health {
	var h Health
	var down, learners []string
	for _, m := range ms {
		if m.Learner {
			h.Learners++
			learners = append(learners, fmt.Sprintf("%s (lag %d)", displayName(m), m.Lag))
			continue
		}
		h.Voters++
		if m.Reachable {
			h.HealthyVoters++
		} else {
			down = append(down, displayName(m))
		}
	}
	h.Quorum = h.Voters/2 + 1
	h.FaultTolerance = max((h.Voters-1)/2, 0)
	h.Remaining = h.HealthyVoters - h.Quorum
	h.HasQuorum = h.Voters > 0 && h.Remaining >= 0
	if h.Voters > 0 && !h.HasQuorum {
		h.Warnings = append(h.Warnings, fmt.Sprintf("no quorum: %d of %d voters reachable, %d needed; no write can commit until enough of them return", h.HealthyVoters, h.Voters, h.Quorum))
	}
	if !leaderKnown {
		h.Warnings = append(h.Warnings, "no Leader is elected: writes are refused until a Standby takes over")
	}
	switch {
	case h.Voters == 1:
		h.Warnings = append(h.Warnings, "single point of failure: one voting member; losing it loses the cluster's writes. Add two Standbys")
	case h.Voters > 1 && h.FaultTolerance == 0:
		h.Warnings = append(h.Warnings, fmt.Sprintf("single point of failure: %d voters tolerate no failure (a quorum is %d); add a Standby", h.Voters, h.Quorum))
	}
	if h.Voters > 1 && h.Voters%2 == 0 {
		h.Warnings = append(h.Warnings, fmt.Sprintf("even number of voters (%d): it tolerates no more failures than %d would; add or remove a Standby", h.Voters, h.Voters-1))
	}
	if len(down) > 0 && h.HasQuorum {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%d voter(s) unreachable (%s): the cluster tolerates %d more failure(s)", len(down), strings.Join(down, ", "), h.Remaining))
	}
	if len(learners) > 0 {
		h.Warnings = append(h.Warnings, fmt.Sprintf("learner(s) not yet voting: %s; the Leader promotes a learner once it has caught up", strings.Join(learners, ", ")))
	}
	return h
}

func displayName(m Member) string {
	if m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("%x (not started)", m.ID)
}

// CheckRemove refuses to remove member id when the voters left would not
// hold a quorum of reachable members. Removing a learner never changes the
// quorum.
func CheckRemove(ms []Member, id uint64) error {
	i := slices.IndexFunc(ms, func(m Member) bool { return m.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: %x", ErrMemberNotFound, id)
	}
	target := ms[i]
	if target.Learner {
		return nil
	}
	voters, healthy := 0, 0
	for _, m := range ms {
		if m.Learner || m.ID == id {
			continue
		}
		voters++
		if m.Reachable {
			healthy++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%w: %s is the only voting member", ErrWouldLoseQuorum, displayName(target))
	}
	if q := voters/2 + 1; healthy < q {
		return fmt.Errorf("%w: without %s, %d of the %d remaining voters are reachable, fewer than the quorum of %d; bring members back first, or pass --force", ErrWouldLoseQuorum, displayName(target), healthy, voters, q)
	}
	return nil
}
