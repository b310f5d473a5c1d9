package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/policy"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Keys of the cluster's identity in etcd. Every sower key lives under
// /sower/; docs/architecture.md lists the whole layout.
const keyClusterMeta = "/sower/meta/cluster"

// clusterMeta is the identity a cluster keeps for its whole life.
type clusterMeta struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the name of the node that bootstrapped the cluster.
	CreatedBy string `json:"created_by"`
}

// ErrAccountMismatch is returned when a data dir is started with another
// account than the one it was created for.
var ErrAccountMismatch = errors.New("server: data dir belongs to another account")

// Bootstrapper creates the first credential of a new cluster: it stores the
// admin's API key (only ever as a hash) and returns the key itself, which is
// shown once, through the admin.key file. Calling it again replaces the key.
type Bootstrapper interface {
	AdminCredential(ctx context.Context, account string) (secret []byte, err error)
}

// loadOrBootstrap returns the cluster identity, creating it on first start.
//
// On first start the admin credential is stored and written to adminKeyPath
// before the identity is committed: if the commit fails the file is removed,
// and if the process dies in between, the next start finds no identity and
// bootstraps again, replacing both the stored key and the file. A committed
// cluster is therefore never without its admin.key, and a started cluster
// never rewrites it.
func loadOrBootstrap(ctx context.Context, cli *clientv3.Client, c Config, b Bootstrapper, adminKeyPath string) (clusterMeta, bool, error) {
	resp, err := cli.Get(ctx, keyClusterMeta)
	if err != nil {
		return clusterMeta{}, false, fmt.Errorf("server: read cluster identity: %w", err)
	}
	if len(resp.Kvs) == 1 {
		var m clusterMeta
		if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
			return clusterMeta{}, false, fmt.Errorf("server: cluster identity in etcd is corrupt: %w", err)
		}
		if m.Account != c.Account {
			return clusterMeta{}, false, fmt.Errorf("%w: %s was created for account %q, not %q; start it with --account %s or use another --data-dir", ErrAccountMismatch, c.DataDir, m.Account, c.Account, m.Account)
		}
		return m, false, nil
	}

	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return clusterMeta{}, false, fmt.Errorf("server: cluster id: %w", err)
	}
	m := clusterMeta{ID: hex.EncodeToString(id), Account: c.Account, CreatedAt: time.Now().UTC(), CreatedBy: c.Name}
	raw, err := json.Marshal(m)
	if err != nil {
		return clusterMeta{}, false, err
	}
	secret, err := b.AdminCredential(ctx, c.Account)
	if err != nil {
		return clusterMeta{}, false, fmt.Errorf("server: create admin credential: %w", err)
	}
	if err := writeFileAtomic(adminKeyPath, append(secret, '\n'), 0o600); err != nil {
		return clusterMeta{}, false, fmt.Errorf("server: write admin credential to %s: %w", adminKeyPath, err)
	}
	txn, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(keyClusterMeta), "=", 0)).
		Then(clientv3.OpPut(keyClusterMeta, string(raw))).
		Commit()
	if err != nil || !txn.Succeeded {
		os.Remove(adminKeyPath)
		if err == nil {
			err = errors.New("another node bootstrapped this cluster concurrently")
		}
		return clusterMeta{}, false, fmt.Errorf("server: bootstrap cluster: %w", err)
	}
	return m, true, nil
}

// Limits of one etcd request, raised from etcd's defaults (128 operations,
// 1.5 MiB) so that most policy loads are one transaction; larger ones are
// split by the policy store (see etcdstore.Policies). 8 MiB stays under
// etcd's recommended maximum of 10 MiB.
const (
	etcdMaxTxnOps       = 16384
	etcdMaxRequestBytes = 8 << 20
)

// maxMessageBytes bounds one gRPC message on the node's server and its own
// gateway connection: a policy text, or a load's answer with the API keys
// of 100,000 new hosts, is larger than gRPC's default of 4 MiB.
const maxMessageBytes = 128 << 20

// openPolicies reads the permission model into memory and makes sure the
// account has its root policy, owned by the admin user, as a Conjur account
// does: created on a new cluster, and on one bootstrapped before policies
// existed. The admin's credential is the bootstrap's.
func openPolicies(ctx context.Context, cli *clientv3.Client, account string, lg *slog.Logger) (*etcdstore.Policies, error) {
	pol := etcdstore.NewPolicies(cli, etcdstore.PolicyConfig{MaxTxnOps: etcdMaxTxnOps, MaxTxnBytes: etcdMaxRequestBytes, Logger: lg})
	if err := pol.Open(ctx); err != nil {
		return nil, fmt.Errorf("server: read policies: %w", err)
	}
	// Every cluster has its root policy after its first start. Only a
	// cluster without one goes through EnsureAccount, which waits for the
	// graph to catch up with etcd: on a node restarting while the Leader
	// loads policy that wait would never end, because the watch that
	// applies those loads (Run) starts only after this.
	if _, ok := pol.Graph().Resource(policy.NewID(account, policy.KindPolicy, policy.RootPolicy)); ok {
		return pol, nil
	}
	if err := pol.EnsureAccount(ctx, account); err != nil {
		return nil, fmt.Errorf("server: create the root policy of account %q: %w", account, err)
	}
	return pol, nil
}
