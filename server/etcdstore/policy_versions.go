package etcdstore

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PolicyVersion is one load of a policy, as Conjur keeps it: the text, who
// loaded it, from where and when.
type PolicyVersion struct {
	// Policy is the policy's id, "account:policy:identifier".
	Policy  string
	Version int64
	// Mode is "append", "update" or "replace" ("sync" for a repository
	// sync, whose text holds every file loaded into the policy).
	Mode       string
	Text       string
	Role       string
	ClientIP   string
	CreatedAt  time.Time
	FinishedAt time.Time
}

// storedVersion is a version in etcd. A long text is stored deflated so
// that a large policy's versions fit in etcd's request size.
type storedVersion struct {
	Policy      string    `json:"id"`
	Version     int64     `json:"version"`
	Mode        string    `json:"mode"`
	Text        string    `json:"policy_text,omitempty"`
	TextDeflate []byte    `json:"policy_text_deflate,omitempty"`
	Role        string    `json:"role"`
	ClientIP    string    `json:"client_ip"`
	CreatedAt   time.Time `json:"created_at"`
	FinishedAt  time.Time `json:"finished_at"`
}

// deflateAbove is the text length from which a version's text is deflated.
const deflateAbove = 16 << 10

func encodeVersion(v PolicyVersion) ([]byte, error) {
	s := storedVersion{Policy: v.Policy, Version: v.Version, Mode: v.Mode, Role: v.Role, ClientIP: v.ClientIP,
		CreatedAt: v.CreatedAt, FinishedAt: v.FinishedAt}
	if len(v.Text) < deflateAbove {
		s.Text = v.Text
	} else {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestSpeed)
		_, _ = io.WriteString(w, v.Text)
		if err := w.Close(); err != nil {
			return nil, err
		}
		s.TextDeflate = buf.Bytes()
	}
	return json.Marshal(s)
}

func decodeVersion(raw []byte) (PolicyVersion, error) {
	var s storedVersion
	if err := json.Unmarshal(raw, &s); err != nil {
		return PolicyVersion{}, fmt.Errorf("%w: policy version: %w", ErrCorruptPolicy, err)
	}
	v := PolicyVersion{Policy: s.Policy, Version: s.Version, Mode: s.Mode, Text: s.Text, Role: s.Role,
		ClientIP: s.ClientIP, CreatedAt: s.CreatedAt, FinishedAt: s.FinishedAt}
	if len(s.TextDeflate) > 0 {
		text, err := io.ReadAll(flate.NewReader(bytes.NewReader(s.TextDeflate)))
		if err != nil {
			return PolicyVersion{}, fmt.Errorf("%w: policy version text: %w", ErrCorruptPolicy, err)
		}
		v.Text = string(text)
	}
	return v, nil
}

// versionKey is where a policy's version lives; versions sort by number.
func versionKey(policyID string, version int64) string {
	return versionPrefix + escapeSegment(policyID) + "/" + fmt.Sprintf("%012d", version)
}

// headVersion returns the policy's latest version number, 0 if none.
func (p *Policies) headVersion(ctx context.Context, policyID string) (int64, error) {
	prefix := versionPrefix + escapeSegment(policyID) + "/"
	resp, err := p.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return 0, fmt.Errorf("etcdstore: read versions of %s: %w", policyID, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(string(resp.Kvs[0].Key), prefix), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: version key %s", ErrCorruptPolicy, resp.Kvs[0].Key)
	}
	return n, nil
}

// Versions returns the versions kept of a policy, oldest first.
func (p *Policies) Versions(ctx context.Context, policyID string) ([]PolicyVersion, error) {
	var out []PolicyVersion
	_, err := p.scan(ctx, versionPrefix+escapeSegment(policyID)+"/", 0, false, func(kv *mvccpb.KeyValue) error {
		pv, err := decodeVersion(kv.Value)
		if err != nil {
			return err
		}
		out = append(out, pv)
		return nil
	})
	return out, err
}
