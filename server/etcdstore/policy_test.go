package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/policy"
)

const account = "acme"

var rootPolicy = policy.NewID(account, policy.KindPolicy, policy.RootPolicy)

// startEtcd runs a real single-member etcd for the test.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	a := testutil.FreeAddrs(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{
		Name: "n1", Dir: t.TempDir(), ClientAddr: a[0], PeerAddr: a[1],
		MaxTxnOps: 16384, MaxRequestBytes: 8 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e.Client()
}

// openStore opens a store over cli and runs its watch for the test.
func openStore(t *testing.T, cli *clientv3.Client, c PolicyConfig) *Policies {
	t.Helper()
	p := NewPolicies(cli, c)
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

// load plans text into the root policy and commits it as a server would,
// with credentials for new roles.
func load(t *testing.T, p *Policies, mode policy.Mode, text string) ([]PolicyVersion, *policy.ChangeSet) {
	t.Helper()
	ctx := context.Background()
	snap, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: mode, Text: []byte(text)})
	if err != nil {
		t.Fatal(err)
	}
	var creds []*apikey.Credential
	for _, r := range cs.NewRoles {
		creds = append(creds, &apikey.Credential{RoleID: r.String(), Scheme: apikey.SchemeHMACSHA256, APIKeyHash: []byte("h")})
	}
	vs, _, err := p.Commit(ctx, snap, PolicyCommit{ChangeSet: cs, Credentials: creds,
		Versions: []PolicyVersion{{Policy: rootPolicy.String(), Mode: mode.String(), Text: text, Role: "acme:user:admin"}}})
	if err != nil {
		t.Fatal(err)
	}
	return vs, cs
}

// stored returns every key and value under prefix.
func stored(t *testing.T, cli *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// factsOf returns a graph's facts keyed by storage key, as JSON.
func factsOf(t *testing.T, g *policy.Graph) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range g.Facts() {
		v, err := policy.MarshalFact(f)
		if err != nil {
			t.Fatal(err)
		}
		out[FactKey(f)] = string(v)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

const hostsPolicy = `
- !host web-01
- !host web-02
- !layer web
- !grant
  role: !layer web
  members: [!host web-01, !host web-02]
- !variable db-password
- !permit
  role: !layer web
  privilege: execute
  resource: !variable db-password
`

// manyHosts declares n hosts in a layer: enough operations to need an intent
// under a small transaction limit.
func manyHosts(n int) string {
	var b strings.Builder
	b.WriteString("- !layer many\n")
	for i := range n {
		fmt.Fprintf(&b, "- !host h-%04d\n", i)
	}
	b.WriteString("- !grant\n  role: !layer many\n  members:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - !host h-%04d\n", i)
	}
	return b.String()
}

func TestCommitStoresTheChangeSetAndTheGraphFollows(t *testing.T) {
	t.Parallel()
	tests := map[string]PolicyConfig{
		"one transaction":                   {MaxTxnOps: 10000, MaxTxnBytes: 4 << 20},
		"intent: few operations per txn":    {MaxTxnOps: 16, MaxTxnBytes: 4 << 20},
		"intent: few bytes per transaction": {MaxTxnOps: 10000, MaxTxnBytes: txnMargin + 2048},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cli := startEtcd(t)
			leader := openStore(t, cli, cfg)
			if err := leader.EnsureAccount(context.Background(), account); err != nil {
				t.Fatal(err)
			}
			// A second node on the same etcd follows through the watch.
			standby := openStore(t, cli, cfg)

			vs, _ := load(t, leader, policy.Replace, hostsPolicy+manyHosts(40))
			if len(vs) != 1 || vs[0].Version != 1 {
				t.Fatalf("versions = %+v, want version 1 of root", vs)
			}
			vs, cs := load(t, leader, policy.Replace, hostsPolicy)
			if vs[0].Version != 2 || len(cs.DeletedRoles) == 0 {
				t.Fatalf("second load: version %d, deleted roles %v", vs[0].Version, cs.DeletedRoles)
			}

			want := factsOf(t, leader.Graph())
			if got := stored(t, cli, factPrefix); !equalMaps(got, want) {
				t.Fatalf("etcd holds %d facts, the leader's graph %d", len(got), len(want))
			}
			if err := standby.WaitFor(context.Background(), leader.Revision()); err != nil {
				t.Fatal(err)
			}
			if got := factsOf(t, standby.Graph()); !equalMaps(got, want) {
				t.Fatalf("the standby's graph holds %d facts, the leader's %d", len(got), len(want))
			}
			// A restarted node reads the same.
			fresh := NewPolicies(cli, cfg)
			if err := fresh.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := factsOf(t, fresh.Graph()); !equalMaps(got, want) {
				t.Fatal("a node opened afterwards reads other facts than the leader holds")
			}

			creds := stored(t, cli, credentialPrefix)
			for _, id := range []string{"acme:host:web-01", "acme:host:web-02"} {
				if _, ok := creds[CredentialKey(id)]; !ok {
					t.Errorf("no credential for %s", id)
				}
			}
			if _, ok := creds[CredentialKey("acme:host:h-0001")]; ok {
				t.Error("the credential of a host the replace deleted is still stored")
			}
			if left := stored(t, cli, intentPrefix); len(left) != 0 {
				t.Errorf("intent keys left behind: %d", len(left))
			}
			host := policy.NewID(account, policy.KindHost, "web-01")
			secret := policy.NewID(account, policy.KindVariable, "db-password")
			if !standby.Graph().Allowed(host, "execute", secret) || standby.Graph().Allowed(host, "update", secret) {
				t.Error("the standby's graph answers the permission check wrongly")
			}
			got, err := leader.Versions(context.Background(), rootPolicy.String())
			if err != nil || len(got) != 2 || got[1].Text != hostsPolicy || got[0].Version != 1 {
				t.Fatalf("Versions = %d versions (%v)", len(got), err)
			}
		})
	}
}

// Two loads planned against the same state: the second is refused, and
// what it would have written is not stored.
func TestCommitRefusesAConcurrentLoad(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]PolicyConfig{
		"one transaction": {MaxTxnOps: 10000, MaxTxnBytes: 4 << 20},
		"intent":          {MaxTxnOps: 16, MaxTxnBytes: 4 << 20},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cli := startEtcd(t)
			p := openStore(t, cli, cfg)
			ctx := context.Background()
			if err := p.EnsureAccount(ctx, account); err != nil {
				t.Fatal(err)
			}
			snap, err := p.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			plan := func(text string) *policy.ChangeSet {
				cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Append, Text: []byte(text)})
				if err != nil {
					t.Fatal(err)
				}
				return cs
			}
			first, second := plan("- !host a\n"), plan(manyHosts(30))
			if _, _, err := p.Commit(ctx, snap, PolicyCommit{ChangeSet: first}); err != nil {
				t.Fatal(err)
			}
			before := stored(t, cli, policyPrefix)
			_, _, err = p.Commit(ctx, snap, PolicyCommit{ChangeSet: second})
			if !errors.Is(err, ErrPolicyConflict) {
				t.Fatalf("second commit on the same snapshot: %v, want ErrPolicyConflict", err)
			}
			if after := stored(t, cli, policyPrefix); !equalMaps(before, after) {
				t.Fatal("a refused load changed etcd")
			}
			if p.Graph().Allowed(policy.NewID(account, policy.KindHost, "h-0001"), "read", policy.NewID(account, policy.KindHost, "h-0001")) {
				t.Fatal("a refused load reached the graph")
			}
		})
	}
}

// without returns m without the guard key (whose revision every load moves).
func without(m map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !slices.Contains(keys, k) && !strings.HasPrefix(k, intentPrefix) {
			out[k] = v
		}
	}
	return out
}

// A large load that fails halfway (here: its third batch) is rolled back
// by its writer: etcd holds what it held, and no graph saw any of it.
func TestAFailedLargeLoadIsRolledBack(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	cfg := PolicyConfig{MaxTxnOps: 16, MaxTxnBytes: 1 << 20}
	p := openStore(t, cli, cfg)
	ctx := context.Background()
	if err := p.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	load(t, p, policy.Replace, hostsPolicy)
	standby := openStore(t, cli, cfg)
	before := without(stored(t, cli, "/sower/"), guardKey)
	graphBefore := factsOf(t, p.Graph())

	var failed atomic.Bool
	p.hookBatch = func(n int) error {
		if n == 3 && failed.CompareAndSwap(false, true) {
			return errors.New("injected: etcd went away")
		}
		return nil
	}
	snap, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Replace, Text: []byte(manyHosts(50))})
	if err != nil {
		t.Fatal(err)
	}
	var creds []*apikey.Credential
	for _, r := range cs.NewRoles {
		creds = append(creds, &apikey.Credential{RoleID: r.String()})
	}
	if _, _, err := p.Commit(ctx, snap, PolicyCommit{ChangeSet: cs, Credentials: creds,
		Versions: []PolicyVersion{{Policy: rootPolicy.String(), Mode: "replace"}}}); err == nil {
		t.Fatal("Commit succeeded through an injected failure")
	}
	p.hookBatch = nil
	if after := without(stored(t, cli, "/sower/"), guardKey); !equalMaps(before, after) {
		t.Fatalf("etcd after the failed load differs from before: %d keys, was %d", len(after), len(before))
	}
	if g := stored(t, cli, guardKey)[guardKey]; g != "{}" {
		t.Fatalf("guard left as %s", g)
	}
	if !equalMaps(factsOf(t, p.Graph()), graphBefore) {
		t.Fatal("the writer's graph changed")
	}
	if err := standby.WaitFor(ctx, latest(t, cli)); err != nil {
		t.Fatal(err)
	}
	if !equalMaps(factsOf(t, standby.Graph()), graphBefore) {
		t.Fatal("the standby's graph holds part of the failed load")
	}
	// The next load goes through.
	load(t, p, policy.Replace, manyHosts(50))
	if err := standby.WaitFor(ctx, latest(t, cli)); err != nil {
		t.Fatal(err)
	}
	if !equalMaps(factsOf(t, standby.Graph()), factsOf(t, p.Graph())) {
		t.Fatal("after the next load the standby and the writer differ")
	}
}

// latest returns etcd's current revision.
func latest(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), guardKey)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// A writer that died in the middle of a large load (its claim and some
// writes are in etcd, its lease is gone): readers see the state before
// it, and the next writer rolls it back.
func TestAnAbandonedLargeLoadIsRolledBackByTheNextWriter(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	ctx := context.Background()
	cfg := PolicyConfig{MaxTxnOps: 10000, MaxTxnBytes: 4 << 20}
	p := openStore(t, cli, cfg)
	if err := p.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	load(t, p, policy.Replace, hostsPolicy)
	standby := openStore(t, cli, cfg)
	before := without(stored(t, cli, "/sower/"), guardKey)
	graphBefore := factsOf(t, p.Graph())

	// What a writer leaves when it dies after two batches, by hand.
	cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Replace, Text: []byte(manyHosts(5))})
	if err != nil {
		t.Fatal(err)
	}
	base := latest(t, cli)
	if _, err := cli.Put(ctx, guardKey, guard{Intent: "dead", Base: base}.encode()); err != nil {
		t.Fatal(err)
	}
	half := len(cs.Created) / 2
	var ops []clientv3.Op
	for _, f := range cs.Created[:half] {
		v, _ := policy.MarshalFact(f)
		ops = append(ops, clientv3.OpPut(FactKey(f), string(v)))
	}
	for _, f := range cs.Deleted {
		ops = append(ops, clientv3.OpDelete(FactKey(f)))
	}
	ops = append(ops, clientv3.OpPut(CredentialKey("acme:host:h-0001"), "{}"), clientv3.OpDelete(CredentialKey("acme:host:web-01")))
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}

	// A node that starts now reads the state before the load.
	reader := NewPolicies(cli, cfg)
	if err := reader.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if !equalMaps(factsOf(t, reader.Graph()), graphBefore) {
		t.Fatal("a node opened during an unfinished load reads part of it")
	}
	if err := standby.WaitFor(ctx, latest(t, cli)); err != nil {
		t.Fatal(err)
	}
	if !equalMaps(factsOf(t, standby.Graph()), graphBefore) {
		t.Fatal("a watching node applied part of an unfinished load")
	}

	// The next writer finds no owner and rolls the load back.
	if _, err := p.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if after := without(stored(t, cli, "/sower/"), guardKey); !equalMaps(before, after) {
		t.Fatalf("after the rollback etcd holds %d keys, before the load %d", len(after), len(before))
	}
	load(t, p, policy.Append, "- !host after\n")
	for _, n := range []*Policies{standby, reader} {
		if n == reader {
			go func() { _ = reader.Run(t.Context()) }()
		}
		if err := n.WaitFor(ctx, latest(t, cli)); err != nil {
			t.Fatal(err)
		}
		if !equalMaps(factsOf(t, n.Graph()), factsOf(t, p.Graph())) {
			t.Fatal("a watching node differs from the writer after the rollback and the next load")
		}
	}
}

func TestVersionsAreNumberedAndPruned(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	p := openStore(t, cli, PolicyConfig{MaxTxnOps: 1000, MaxTxnBytes: 4 << 20, VersionsKept: 3})
	if err := p.EnsureAccount(context.Background(), account); err != nil {
		t.Fatal(err)
	}
	big := manyHosts(2000) // deflated: longer than deflateAbove
	for i := range 5 {
		text := fmt.Sprintf("- !host v%d\n", i)
		if i == 4 {
			text = big
		}
		vs, _ := load(t, p, policy.Replace, text)
		if vs[0].Version != int64(i+1) {
			t.Fatalf("load %d got version %d", i+1, vs[0].Version)
		}
	}
	got, err := p.Versions(context.Background(), rootPolicy.String())
	if err != nil {
		t.Fatal(err)
	}
	var nums []int64
	for _, v := range got {
		nums = append(nums, v.Version)
	}
	if !slices.Equal(nums, []int64{3, 4, 5}) {
		t.Fatalf("kept versions %v, want [3 4 5]", nums)
	}
	if got[2].Text != big || got[2].Mode != "replace" || got[2].Role != "acme:user:admin" || got[2].FinishedAt.IsZero() {
		t.Fatalf("version 5 does not round-trip: mode %q role %q, text %d bytes", got[2].Mode, got[2].Role, len(got[2].Text))
	}
}

// A load that deletes a variable deletes its values with it (Conjur does),
// in the same commit; a large load that fails leaves them in place.
func TestDeletingAVariableDeletesItsValues(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	cfg := PolicyConfig{MaxTxnOps: 16, MaxTxnBytes: 1 << 20}
	p := openStore(t, cli, cfg)
	ctx := context.Background()
	if err := p.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	secrets := newSecrets(t, cli)
	const both = "- !variable db/password\n- !variable keep\n"
	load(t, p, policy.Replace, both)
	for _, v := range []string{"one", "two"} {
		if _, err := secrets.Put(ctx, dbPassword, "acme:user:admin", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := secrets.Put(ctx, "acme:variable:keep", "acme:user:admin", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	// A large load (many hosts, written in batches) that also drops
	// db/password fails halfway: the values are all still there.
	var failed atomic.Bool
	p.hookBatch = func(n int) error {
		// Fail the load once; the rollback's own batches go through.
		if n == 2 && failed.CompareAndSwap(false, true) {
			return errors.New("injected: etcd went away")
		}
		return nil
	}
	snap, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := p.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Replace, Text: []byte("- !variable keep\n" + manyHosts(30))})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Commit(ctx, snap, PolicyCommit{ChangeSet: cs, Versions: []PolicyVersion{{Policy: rootPolicy.String(), Mode: "replace"}}}); err == nil {
		t.Fatal("Commit succeeded through an injected failure")
	}
	p.hookBatch = nil
	if got := len(stored(t, cli, SecretPrefix(dbPassword))); got != 2 {
		t.Fatalf("after the failed load db/password has %d values, want 2", got)
	}

	// The same change as a load that commits.
	load(t, p, policy.Replace, "- !variable keep\n")
	if got := stored(t, cli, SecretPrefix(dbPassword)); len(got) != 0 {
		t.Fatalf("db/password was deleted but %d of its values remain", len(got))
	}
	if _, _, err := secrets.Get(ctx, dbPassword, 0); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("Get of the deleted variable: %v, want ErrNoSecret", err)
	}
	if v, _, err := secrets.Get(ctx, "acme:variable:keep", 0); err != nil || string(v) != "kept" {
		t.Fatalf("the other variable's value: %q, %v", v, err)
	}
}

// Sync returns once the graph reflects the store's current revision, also
// when the writes after the last policy change touched other keys (a
// Follower's copy records its cursor last): the watch's progress mark
// says so. Run over the in-process client a Follower's private etcd has.
func TestSyncReachesTheCurrentRevisionThroughAProgressMark(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := cluster.StartPrivateEtcd(ctx, cluster.PrivateEtcdConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cli := e.Client()
	follower := openStore(t, cli, PolicyConfig{})
	writer := openStore(t, cli, PolicyConfig{})
	if err := writer.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	load(t, writer, policy.Replace, hostsPolicy+manyHosts(5))
	resp, err := cli.Put(ctx, "/sower-replica/applied", "42")
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v (graph at %d, store at %d)", err, follower.Revision(), resp.Header.Revision)
	}
	if got := follower.Revision(); got < resp.Header.Revision {
		t.Fatalf("after Sync the graph is at %d, the store at %d", got, resp.Header.Revision)
	}
	if got, want := factsOf(t, follower.Graph()), factsOf(t, writer.Graph()); !equalMaps(got, want) {
		t.Fatalf("after Sync the graph differs from the writer's:\n got %v\nwant %v", got, want)
	}
}
