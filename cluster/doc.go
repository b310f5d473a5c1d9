// Package cluster runs and observes the etcd quorum that holds a sower
// cluster's state: the Leader and its Standbys are etcd members, Followers are
// not.
//
// A node starts its embedded etcd member with StartEtcd and talks to it
// in-process (no socket) through Etcd.Client. The member's identity, the
// current raft leader and the raft indexes come from Etcd.Info, which the
// status API reports.
//
//	e, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{Name: "leader-1", Dir: dir, ...})
//	if err != nil { ... }
//	defer e.Close()
//	_, err = e.Client().Put(ctx, "/sower/x", "y")
//
// StartEtcd returns only once the member is ready to serve (or has failed,
// or ctx is done); it never leaves a half-started member behind.
package cluster
