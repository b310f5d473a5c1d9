// Package seed issues the seeds new cluster nodes start from: a Follower
// seed (its server and replication certificates, the CA bundle and pin, the
// data key, the Leader's and Standbys' endpoints) and a Standby seed (its
// node and etcd peer certificates, the data key and a single-use enrollment
// token). The archive format, signing, sealing and safe unpacking live in
// seed/archive; this package decides who may have which seed.
//
// An Issuer answers, for every request:
//
//   - may the caller have a seed at all: `execute` on
//     webservice:conjur/seed-generation (Conjur's rule);
//   - may it have these host names: every name must match a pattern of the
//     sower/follower-hostnames annotation on that webservice and, when the
//     caller's host carries the annotation too, one of its patterns; names
//     of the cluster's own nodes are never allowed (Conjur has no such
//     rule: a Follower certificate for the Leader's name would let a
//     Follower impersonate it);
//   - for a Standby, may the caller manage the cluster (`update` on policy
//     conjur/cluster/<name>: a Standby joins the quorum and holds the data
//     key, far more than a Follower), and is the host a member of that
//     policy's layer.
//
// Every issued seed, and every refusal, is recorded through the Store, so
// `sower seed list` is an audit trail; `sower seed revoke` voids a seed's
// certificates and enrollment token.
//
// Inputs: the caller's identity, the request, and the policy, CA, signer and
// store the server wires in. Output: the sealed (or, where allowed, plain)
// archive bytes and its record.
package seed
