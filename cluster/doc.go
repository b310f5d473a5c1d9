// Package cluster runs the etcd quorum that holds a sower cluster's state
// and decides which node is the Leader: the Leader and its Standbys are
// etcd members, Followers are not. docs/cluster.md describes the whole
// design; this is the map of the package.
//
// A node starts its embedded etcd member with StartEtcd and talks to it in
// process (no socket) through Etcd.Client; StartEtcd returns only once the
// member is ready (or has failed, or ctx is done) and never leaves a
// half-started member behind. Etcd.Info is the member's raft view.
//
//	e, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{Name: "leader-1", Dir: dir, ...})
//	if err != nil { ... }
//	defer e.Close()
//
// Election makes exactly one node the Leader: the holder of LeaderKey, a
// key on a lease of the failover TTL (FailoverTTL reads it from the cluster
// policy). The key's create revision fences writes: Election.Txn (or a
// transaction carrying Election.Fence, or a client from FencedClient)
// commits only during the node's own term, so a former Leader never
// commits a write. Election is the WriteGuard sower's services call:
//
//	el, _ := cluster.NewElection(cluster.ElectionConfig{Client: e.Client(), Self: me, TTL: ttl})
//	go el.Run(ctx)
//	if err := el.Check(); err != nil { return err } // *NotLeaderError names the Leader
//	resp, err := el.Txn(ctx, cmps, thenOps, elseOps)
//
// Enroller admits a Standby that presents a seed's enrollment token: it
// adds the node as an etcd learner and consumes the token, all or nothing.
// Members lists the members with their health and lag, removes members
// without losing quorum (CheckRemove), and, on the Leader, promotes
// learners that have caught up, removes learners that never started, and
// keeps raft leadership on a Standby. Assess turns a member list into the
// quorum's fault tolerance and warnings.
package cluster
