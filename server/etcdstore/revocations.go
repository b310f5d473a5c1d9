package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Revocation is a revoked certificate as stored at RevokedPrefix+<serial>,
// the serial in lower-case hex without colons.
type Revocation struct {
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revoked_at"`
	RevokedBy string    `json:"revoked_by"`
	Reason    string    `json:"reason,omitempty"`
}

// NormalizeSerial turns "3A:F1:07" or "3af107" into "3af107", and refuses
// anything that is not a positive hex number.
func NormalizeSerial(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q is not a hex serial number (as `openssl x509 -serial` prints it)", s)
	}
	return n.Text(16), nil
}

// revocationOps are the puts that revoke serials, with the audit record.
func revocationOps(serials []string, by, reason string, at time.Time) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(serials)+1)
	for _, s := range serials {
		raw, _ := json.Marshal(Revocation{Serial: s, RevokedAt: at, RevokedBy: by, Reason: reason})
		ops = append(ops, clientv3.OpPut(RevokedPrefix+s, string(raw)))
	}
	return append(ops, auditOp(at, "certificates-revoked", map[string]any{"serials": serials, "by": by, "reason": reason}))
}

// Revocations stores revoked certificates.
type Revocations struct{ cli *clientv3.Client }

// NewRevocations returns the revocation store.
func NewRevocations(cli *clientv3.Client) *Revocations { return &Revocations{cli: cli} }

// Revoke revokes one serial.
func (r *Revocations) Revoke(ctx context.Context, serial, by, reason string, at time.Time) (Revocation, error) {
	s, err := NormalizeSerial(serial)
	if err != nil {
		return Revocation{}, err
	}
	if _, err := r.cli.Txn(ctx).Then(revocationOps([]string{s}, by, reason, at)...).Commit(); err != nil {
		return Revocation{}, fmt.Errorf("etcdstore: revoke %s: %w", s, err)
	}
	return Revocation{Serial: s, RevokedAt: at, RevokedBy: by, Reason: reason}, nil
}

// List returns every revocation.
func (r *Revocations) List(ctx context.Context) ([]Revocation, error) {
	resp, err := r.cli.Get(ctx, RevokedPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: list revocations: %w", err)
	}
	out := make([]Revocation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rv Revocation
		if json.Unmarshal(kv.Value, &rv) != nil || rv.Serial == "" {
			rv.Serial = strings.TrimPrefix(string(kv.Key), RevokedPrefix)
		}
		out = append(out, rv)
	}
	return out, nil
}
