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

// RoleOf derives a member's role from its raft view: the raft leader is the
// sower Leader (it is the only member whose writes commit without a forward),
// a learner is a Standby that is still catching up, and any other voting
// member is a Standby.
func RoleOf(i Info) Role {
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
