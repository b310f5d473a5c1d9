package cluster

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/pkg/v3/traceutil"
	"go.etcd.io/etcd/server/v3/lease"
	"go.etcd.io/etcd/server/v3/storage"
)

// WriteDirect deletes keys and puts keys and values in the member's
// key-value store as one revision, outside raft, as BulkPut does, and
// returns that revision. It is how a Follower applies the source's
// revisions to its Rebuildable copy: through a transaction, each one cost
// a raft proposal, a WAL record, a trip through the apply scheduler and
// the client adapter, most of a Follower's CPU per replicated write.
// Watches see the revision as any other; reads through Client see it once
// it returns.
//
// The same limits as BulkPut hold: only a Rebuildable member (what it
// writes is durable through a clean Close, which such a member needs
// anyway), and its writer must be the only one writing those keys. It
// refuses while the NOSPACE alarm is raised or the store is past its
// quota, as a transaction would.
func (e *Etcd) WriteDirect(deletes, keys []string, values [][]byte) (int64, error) {
	if !e.rebuildable {
		return 0, ErrNotRebuildable
	}
	if len(keys) != len(values) {
		return 0, fmt.Errorf("cluster: a direct write of %d keys and %d values", len(keys), len(values))
	}
	e.bulk.RLock()
	defer e.bulk.RUnlock()
	select {
	case <-e.e.Server.StopNotify():
		return 0, ErrEtcdStopped
	default:
	}
	if e.closing.Load() {
		return 0, ErrEtcdStopped
	}
	for _, a := range e.e.Server.Alarms() {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			return 0, rpctypes.ErrNoSpace
		}
	}
	quota := e.e.Server.Cfg.QuotaBackendBytes
	if quota == 0 {
		quota = storage.DefaultQuotaBytes
	}
	if quota > 0 && e.e.Server.Backend().Size() >= quota {
		return 0, rpctypes.ErrNoSpace
	}
	if len(keys) == 0 && len(deletes) == 0 {
		return e.Revision(), nil
	}
	// etcd's store records trace steps per put; a trace disables them
	// inside StepWithFunction (else they are a third of the write).
	tr := traceutil.TODO()
	tw := e.e.Server.KV().Write(tr)
	var deleted int64
	tr.StepWithFunction(func() {
		for _, k := range deletes {
			n, _ := tw.DeleteRange([]byte(k), nil)
			deleted += n
		}
		for i, k := range keys {
			tw.Put([]byte(k), values[i], lease.NoLease)
		}
	}, "direct write")
	rev := tw.Rev()
	if deleted > 0 || len(keys) > 0 {
		rev++ // the revision this write made
	}
	tw.End()
	return rev, nil
}
