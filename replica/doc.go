// Package replica keeps a Follower's copy of the part of a sower cluster's
// etcd state that a read-only node needs, and feeds it from the quorum.
//
// Two sides:
//
//   - Hub runs on every Leader and Standby. It holds one etcd watch on the
//     node's own member, keeps the recent replicated revisions in a ring,
//     and fans them out to every attached Follower (Serve): a snapshot of
//     the replicated keys at a revision R when the Follower has nothing
//     the hub can resume from, then every change after R, one message per
//     source revision, and progress marks while idle. A hundred Followers
//     cost one watch.
//   - Replica runs on a Follower. It is a small state machine with one
//     cursor, the source revision applied (Applied): it opens a Feed from
//     the cursor on whichever quorum node answers, applies each source
//     revision to its Store whole, and when the hub answers with a new
//     snapshot (the cursor was compacted away, or the node cannot resume
//     it) it collects the snapshot aside and swaps it in in one step, so
//     reads keep being served from the old copy until the new one is
//     whole. A lost stream reconnects, from the cursor, to the next node.
//
// What is replicated is an allow-list of key prefixes (Replicated): policy,
// sealed secret values, credential hashes, token-signing keys and the
// API-key pepper (all sealed under the data key the Follower's seed
// carries), revocations, data-key rotations, the cluster's identity and its
// nodes' endpoints. Seed records, enrollment tokens, the CA record with its
// keys, the election and the audit trail are never sent: the hub filters
// every key through the allow-list, snapshot and changes alike.
//
// The package knows etcd (both ends are etcd stores) but no protobuf and no
// HTTP: server/api/replication adapts Serve to a gRPC stream and Feed to a
// gRPC client.
package replica
