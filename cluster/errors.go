package cluster

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLeader is wrapped by every refusal of a write on a node that
	// is not the Leader; errors.As finds the *NotLeaderError that names
	// the Leader.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrTokenInvalid is returned for an enrollment token that is
	// unknown, already used, revoked, or issued for another node.
	ErrTokenInvalid = errors.New("cluster: enrollment token is not valid")
	// ErrTokenExpired is returned for an enrollment token past its expiry.
	ErrTokenExpired = errors.New("cluster: enrollment token has expired")
	// ErrNotClusterMember is returned when the enrolling host is not a
	// member of the cluster's layer in the cluster policy.
	ErrNotClusterMember = errors.New("cluster: host is not a member of the cluster policy's layer")
	// ErrMemberExists is returned when a node enrolls under the name of a
	// current member.
	ErrMemberExists = errors.New("cluster: a member with this name already exists")
	// ErrMemberNotFound is returned for a member name or id the cluster
	// does not know.
	ErrMemberNotFound = errors.New("cluster: no such member")
	// ErrWouldLoseQuorum is returned when removing a member would leave
	// fewer healthy voters than a quorum.
	ErrWouldLoseQuorum = errors.New("cluster: removing this member would lose quorum")
	// ErrIsLeader is returned when an operation needs the Leader to hand
	// its role over first (removing it).
	ErrIsLeader = errors.New("cluster: member is the Leader")
	// ErrBadTransferee is returned when leadership cannot go to the named
	// member (a learner, unreachable, lagging, or the Leader itself).
	ErrBadTransferee = errors.New("cluster: cannot hand leadership to this member")
	// ErrLearnerNotReady is returned when a learner is promoted before it
	// has caught up with the Leader's log.
	ErrLearnerNotReady = errors.New("cluster: learner has not caught up yet")
	// ErrNotLearner is returned when promoting a member that already votes.
	ErrNotLearner = errors.New("cluster: member is not a learner")
	// ErrJoinInProgress is returned while another Standby's join is under
	// way (its learner has not started yet); the joining node retries.
	ErrJoinInProgress = errors.New("cluster: another Standby is joining")
	// ErrUnhealthy is returned when etcd refuses a membership change
	// because a voter is not connected.
	ErrUnhealthy = errors.New("cluster: a voting member is unreachable")
	// ErrCertMismatch is returned when an enrolling node's client
	// certificate does not name it.
	ErrCertMismatch = errors.New("cluster: the client certificate does not name the enrolling node")
	// ErrBadPeerURL is returned when an enrolling node advertises a peer
	// URL its certificate does not cover.
	ErrBadPeerURL = errors.New("cluster: peer URL is not covered by the node's certificate")
)

// NotLeaderError is the refusal of a write on a node that is not the
// Leader. It names the Leader when one is known, so a caller can go there.
type NotLeaderError struct {
	// Leader is the current Leader; meaningful only when Known.
	Leader Leader
	Known  bool
}

func (e *NotLeaderError) Error() string {
	if !e.Known {
		return "cluster: not the leader; no Leader is elected right now (a failover is under way or the quorum is lost); retry in a few seconds"
	}
	return fmt.Sprintf("cluster: not the leader; the leader is %s (%s)", e.Leader.Name, e.Leader.URL)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
