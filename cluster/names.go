package cluster

// MemberNames returns the names of every etcd member the node knows, learners
// included. Seed issuance reserves them: no Follower certificate may carry
// the name of a quorum member.
func (e *Etcd) MemberNames() []string {
	ms := e.e.Server.Cluster().Members()
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Name != "" {
			out = append(out, m.Name)
		}
	}
	return out
}
