package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/replica"
)

// The policy guard of a large load names, as Base, the etcd revision of
// the state before the load, and a store that opens while the load is
// half written reads the facts at Base. A Follower's copy has revisions
// of its own, so its copy of the guard must name one of the copy's.

// RebaseGuard is a replica.LocalConfig.Rewrite: a claimed guard arriving
// in a Follower's copy gets, as Base, the copy's revision just before the
// claim (the facts did not change between the source's Base and the
// claim: every load compares the guard), or the Base the copy gave the
// same load before (its abort). Every other value passes unchanged.
func RebaseGuard(key string, value []byte, local replica.LocalView) []byte {
	if key != guardKey {
		return value
	}
	g, err := decodeGuard(value)
	if err != nil || g.Intent == "" {
		return value
	}
	g.Claimed = 0 // a source revision; only the Leader's rollback reads it
	if prev, err := decodeGuard(local.Get(guardKey)); err == nil && prev.Intent == g.Intent && prev.Base > 0 {
		g.Base = prev.Base
	} else {
		g.Base = local.Revision()
	}
	return []byte(g.encode())
}

// IsGuardKey reports whether key is the policy guard: the only key
// RebaseGuard changes (replica.LocalConfig.Rewrites), and one whose
// transactions the policy store's watch reads whole, so a Follower
// applies a revision that writes it on its own (replica.Config.Alone).
func IsGuardKey(key string) bool { return key == guardKey }

// PolicySnapshotRevision is a replica.HubConfig.SnapshotAt: while a large
// load is half written at rev, a snapshot is taken at the load's Base
// (the state before it), so that a Follower never copies half a load; the
// rest of the load reaches it as changes. When Base is no longer in etcd's
// history, rev is kept.
func PolicySnapshotRevision(cli *clientv3.Client) func(ctx context.Context, rev int64) (int64, error) {
	return func(ctx context.Context, rev int64) (int64, error) {
		resp, err := cli.Get(ctx, guardKey, clientv3.WithRev(rev))
		if err != nil {
			return 0, fmt.Errorf("etcdstore: read the policy guard at %d: %w", rev, err)
		}
		if len(resp.Kvs) == 0 {
			return rev, nil
		}
		g, err := decodeGuard(resp.Kvs[0].Value)
		if err != nil || g.Intent == "" || g.Base <= 0 {
			return rev, nil
		}
		if _, err := cli.Get(ctx, guardKey, clientv3.WithRev(g.Base), clientv3.WithCountOnly()); err != nil {
			return rev, nil // compacted: the Follower copies what there is
		}
		return g.Base, nil
	}
}
