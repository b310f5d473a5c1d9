package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// CertsPrefix holds, per member name, the serials of the certificates that
// member may reach etcd with:
//
//	/sower/cluster/certs/<name>  {"name":..., "serials":["<hex>",...]}
//
// The gate admits a certificate only when its common name is a member's and
// its serial is in that member's record, so that the certificates of a
// member that was removed stay refused after a new node enrolls under the
// same name: enrollment replaces the record with the new seed's serials.
// A node adds each renewed certificate before it uses it.
const CertsPrefix = "/sower/cluster/certs/"

// maxBoundSerials is how many serials a member's record keeps, newest last.
// A node holds two certificates (node and etcd peer), renewed at two thirds
// of their life, so one that drops out of the last eight has expired long
// before.
const maxBoundSerials = 8

// ErrCertNotBound is wrapped by the gate's refusal of a member's name on a
// certificate that is not one recorded for it.
var ErrCertNotBound = errors.New("cluster: certificate is not one recorded for this member")

type certRecord struct {
	Name    string   `json:"name"`
	Serials []string `json:"serials"`
}

func certKey(name string) string { return CertsPrefix + name }

// certRecordOp is the put that makes serials the only certificates name may
// use (an enrollment).
func certRecordOp(name string, serials []string) clientv3.Op {
	raw, _ := json.Marshal(certRecord{Name: name, Serials: serials})
	return clientv3.OpPut(certKey(name), string(raw))
}

// BindCerts adds serials (hex, as x509's SerialNumber.Text(16)) to the
// certificates member name may reach etcd with, keeping the newest
// maxBoundSerials. A node calls it for its own certificates: at start (a
// node of a cluster made before the record existed) and before it uses a
// renewed one. Serials already there are not written again.
func BindCerts(ctx context.Context, cli *clientv3.Client, name string, serials ...string) error {
	key := certKey(name)
	for range 16 {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("cluster: read the certificates of %s: %w", name, err)
		}
		var rec certRecord
		var rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
				return fmt.Errorf("cluster: the certificate record of %s is unreadable: %w", name, err)
			}
		}
		changed := false
		for _, s := range serials {
			if !slices.Contains(rec.Serials, s) {
				rec.Serials = append(rec.Serials, s)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		if n := len(rec.Serials); n > maxBoundSerials {
			rec.Serials = rec.Serials[n-maxBoundSerials:]
		}
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(certRecordOp(name, rec.Serials)).Commit()
		if err != nil {
			return fmt.Errorf("cluster: record the certificates of %s: %w", name, err)
		}
		if txn.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("cluster: the certificate record of %s kept changing; try again", name)
}

// bound reports whether serial is one of name's recorded certificates. A
// name without a record (a member of a cluster made before records
// existed, until it restarts) is admitted by its name alone.
func (v *memberView) bound(src *memberSource, name, serial string) error {
	ctx, cancel := context.WithTimeout(context.Background(), gateReadTimeout)
	defer cancel()
	resp, err := src.get(ctx, certKey(name), clientv3.WithSerializable())
	if err != nil {
		return fmt.Errorf("%w: %q: cannot read its certificate record: %w", ErrCertNotBound, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var rec certRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return fmt.Errorf("%w: %q: its certificate record is unreadable", ErrCertNotBound, name)
	}
	if !slices.Contains(rec.Serials, serial) {
		return fmt.Errorf("%w: %q, serial %s (a certificate of a former member of that name?)", ErrCertNotBound, name, serial)
	}
	return nil
}

// gateReadTimeout bounds the gate's reads of its own member.
const gateReadTimeout = time.Second
