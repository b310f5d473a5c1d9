package cluster

// Role is a node's part in the cluster.
type Role int

// The roles a node reports. Followers never run an etcd member.
const (
	RoleUnknown Role = iota
	RoleLeader
	RoleStandby
	RoleLearner
	RoleFollower
)

func (r Role) String() string {
	switch r {
	case RoleLeader:
		return "leader"
	case RoleStandby:
		return "standby"
	case RoleLearner:
		return "learner"
	case RoleFollower:
		return "follower"
	}
	return "unknown"
}

// RoleOf derives a member's role from the Leader election: the member that
// holds the election key is the Leader, a learner is a Standby that is still
// catching up, and any other voting member is a Standby. The raft leader is
// not the Leader: sower keeps the two on different members (see Members).
func RoleOf(i Info, leader Leader, known bool) Role {
	switch {
	case i.IsLearner:
		return RoleLearner
	case known && i.MemberID != 0 && leader.MemberID == i.MemberID:
		return RoleLeader
	case i.MemberID != 0:
		return RoleStandby
	}
	return RoleUnknown
}

// RaftRoleOf derives a role from the raft view alone, for a member that
// takes no part in the Leader election.
func RaftRoleOf(i Info) Role {
	switch {
	case i.IsLearner:
		return RoleLearner
	case i.IsLeader():
		return RoleLeader
	case i.MemberID != 0:
		return RoleStandby
	}
	return RoleUnknown
}
