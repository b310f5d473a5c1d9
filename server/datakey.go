package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Data key rotation, without downtime, on every member:
//
//  1. The rotating node makes the next keyring (current + a new version) and
//     publishes it at keyringKey, sealed under the current primary, which
//     every member holds.
//  2. Every other member's watcher opens it, merges the new version into its
//     keyring, rewrites its data.key, and acknowledges at keyringAckPrefix.
//  3. Once every member has acknowledged (or the wait times out, which
//     aborts with nothing sealed under the new version yet), the rotating
//     node merges too, so from then on it seals under the new version, which
//     everybody can open.
//  4. It re-seals every sealed value in etcd under the new version.
const (
	keyringKey       = "/sower/pki/data-keyring"
	keyringAckPrefix = "/sower/pki/data-keyring-acks/"
	sealedMagic      = "S1"
)

type dataKeys struct {
	kr   *pki.Keyring
	path string
	name string
	cli  *clientv3.Client
	lg   *slog.Logger
	// members lists the etcd member names that must acknowledge.
	members func() []string
	// audit records the rotation (start in the keyring's transaction, end
	// once resealed); nil on a Follower.
	audit *audit.Queue

	mu         sync.Mutex
	publishing uint32
}

// RotateResult reports a rotation.
type RotateResult struct {
	Version  uint32
	Members  []string
	Resealed int64
	Current  int64
}

// Rotate runs the protocol above.
func (d *dataKeys) Rotate(ctx context.Context) (RotateResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next, err := pki.ParseKeyring(d.kr.Marshal())
	if err != nil {
		return RotateResult{}, err
	}
	v, err := next.Rotate()
	if err != nil {
		return RotateResult{}, err
	}
	sealed, err := d.kr.Seal(keyringKey, next.Marshal())
	if err != nil {
		return RotateResult{}, err
	}
	d.publishing = v
	defer func() { d.publishing = 0 }()
	ops := []clientv3.Op{clientv3.OpPut(keyringKey, string(sealed))}
	if d.audit != nil {
		ev, err := etcdstore.EventOp(audit.Event{ID: d.audit.NextID(), At: time.Now().UTC(), Node: d.audit.Node(), Kind: audit.KindDataKey,
			Action: "rotate-start", Outcome: audit.OutcomeSuccess, Resource: fmt.Sprintf("data-key/%d", v)})
		if err != nil {
			return RotateResult{}, err
		}
		ops = append(ops, ev)
	}
	if _, err := d.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return RotateResult{}, fmt.Errorf("server: publish the new data key version: %w", err)
	}
	others := make([]string, 0)
	for _, m := range d.members() {
		if m != d.name {
			others = append(others, m)
		}
	}
	if err := d.waitAcks(ctx, v, others); err != nil {
		return RotateResult{}, err
	}
	if err := d.kr.Merge(next); err != nil {
		return RotateResult{}, err
	}
	if err := d.kr.WriteFile(d.path); err != nil {
		return RotateResult{}, fmt.Errorf("server: write %s: %w", d.path, err)
	}
	res, err := d.reseal(ctx)
	res.Version, res.Members = v, append(others, d.name)
	if err != nil {
		return res, err
	}
	if d.audit != nil {
		d.audit.Record(audit.Event{Kind: audit.KindDataKey, Action: "rotate", Outcome: audit.OutcomeSuccess,
			Resource: fmt.Sprintf("data-key/%d", v)})
	}
	d.lg.Info("data key rotated", "version", v, "members", res.Members, "resealed", res.Resealed)
	return res, nil
}

// waitAcks waits, bounded, until every member named has acknowledged v.
func (d *dataKeys) waitAcks(ctx context.Context, v uint32, members []string) error {
	if len(members) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	want := fmt.Sprint(v)
	wc := d.cli.Watch(ctx, keyringAckPrefix, clientv3.WithPrefix())
	for {
		resp, err := d.cli.Get(ctx, keyringAckPrefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("server: read data key acknowledgements: %w", err)
		}
		acked := map[string]bool{}
		for _, kv := range resp.Kvs {
			if string(kv.Value) == want {
				acked[strings.TrimPrefix(string(kv.Key), keyringAckPrefix)] = true
			}
		}
		var missing []string
		for _, m := range members {
			if !acked[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-wc:
		case <-ctx.Done():
			return fmt.Errorf("server: members %s did not take data key version %d; nothing was sealed under it, rotate again once they are up", strings.Join(missing, ", "), v)
		}
	}
}

// watch merges keyrings published by other members and acknowledges them.
func (d *dataKeys) watch(ctx context.Context) error {
	for ctx.Err() == nil {
		resp, err := d.cli.Get(ctx, keyringKey)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("server: read the published data keyring: %w", err)
		}
		if len(resp.Kvs) == 1 {
			d.take(ctx, resp.Kvs[0].Value)
		}
		wc := d.cli.Watch(ctx, keyringKey, clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wc {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					d.take(ctx, ev.Kv.Value)
				}
			}
		}
	}
	return nil
}

func (d *dataKeys) take(ctx context.Context, sealed []byte) {
	raw, err := d.kr.Open(keyringKey, sealed)
	if err != nil {
		d.lg.Error("cannot open the published data keyring (is this node's data.key the cluster's?)", "err", err)
		return
	}
	next, err := pki.ParseKeyring(raw)
	if err != nil {
		d.lg.Error("published data keyring is corrupt", "err", err)
		return
	}
	v := next.Primary()
	d.mu.Lock()
	publishing := d.publishing
	d.mu.Unlock()
	if publishing == v {
		return // our own rotation: we merge last, in Rotate
	}
	if !containsVersion(d.kr.Versions(), v) {
		if err := d.kr.Merge(next); err != nil {
			d.lg.Error("merge the published data keyring", "err", err)
			return
		}
		if err := d.kr.WriteFile(d.path); err != nil {
			d.lg.Error("write data.key", "err", err)
			return
		}
		d.lg.Info("took a new data key version", "version", v)
	}
	if _, err := d.cli.Put(ctx, keyringAckPrefix+d.name, fmt.Sprint(v)); err != nil {
		d.lg.Warn("acknowledge data key version", "version", v, "err", err)
	}
}

func containsVersion(vs []uint32, v uint32) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// aadOf is the additional data a value at key is sealed under: its key path,
// except where a package binds the value to a name of its own.
func aadOf(key string) string {
	switch {
	case key == etcdstore.PepperKey:
		return apikey.PepperAAD
	case strings.HasPrefix(key, etcdstore.SigningKeyPrefix):
		return token.KeyAADPrefix + strings.TrimPrefix(key, etcdstore.SigningKeyPrefix)
	case key == keyringKey:
		return "" // sealed under the previous primary on purpose; never re-sealed
	}
	return key
}

// reseal re-seals every sealed value under /sower/ that is not under the
// primary version, each with a compare-and-swap so a concurrent write wins.
func (d *dataKeys) reseal(ctx context.Context) (RotateResult, error) {
	var res RotateResult
	primary := d.kr.Primary()
	resp, err := d.cli.Get(ctx, "/sower/", clientv3.WithPrefix())
	if err != nil {
		return res, fmt.Errorf("server: scan for sealed values: %w", err)
	}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		if !bytes.HasPrefix(kv.Value, []byte(sealedMagic)) {
			continue
		}
		aad := aadOf(key)
		if aad == "" {
			continue
		}
		v, err := pki.SealedKeyVersion(kv.Value)
		if err != nil {
			continue
		}
		if v == primary {
			res.Current++
			continue
		}
		plain, err := d.kr.Open(aad, kv.Value)
		if err != nil {
			return res, fmt.Errorf("server: open %s for re-sealing: %w", key, err)
		}
		sealed, err := d.kr.Seal(aad, plain)
		clear(plain)
		if err != nil {
			return res, err
		}
		txn, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(sealed))).Commit()
		if err != nil {
			return res, fmt.Errorf("server: re-seal %s: %w", key, err)
		}
		if txn.Succeeded {
			res.Resealed++
		} else {
			res.Current++ // rewritten meanwhile, by a writer sealing under the primary
		}
	}
	return res, nil
}
