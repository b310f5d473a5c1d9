package server

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
)

// forwardedEventsPrefix is where the trail keeps events: audit.Trail's
// documented /sower/audit/events/<Key>.
const forwardedEventsPrefix = "/sower/audit/events/"

// etcdEventTrail stores events under forwardedEventsPrefix, each once: a
// key already present is left as it is. It is the quorum's side of
// PushAudit until the trail of issue 13 (branch audit) replaces it with
// its own implementation of audit.Trail.
type etcdEventTrail struct{ cli *clientv3.Client }

// txnChunk stays under etcd's default --max-txn-ops (128): each event is
// one nested transaction.
const txnChunk = 64

func (t etcdEventTrail) Append(ctx context.Context, events []audit.Event) error {
	for start := 0; start < len(events); start += txnChunk {
		var ops []clientv3.Op
		seen := map[string]bool{}
		for _, e := range events[start:min(start+txnChunk, len(events))] {
			k := forwardedEventsPrefix + e.Key()
			if seen[k] {
				continue
			}
			seen[k] = true
			v, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("server: audit event %s: %w", e.ID, err)
			}
			ops = append(ops, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)},
				[]clientv3.Op{clientv3.OpPut(k, string(v))}, nil))
		}
		if _, err := t.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("server: store audit events: %w", err)
		}
	}
	return nil
}
