package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
func startEtcd(t *testing.T) *clientv3.Client {
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

// A writer that died after committing a large load but before copying it:
// a reader overlays the committed operations, and Open finishes the copy. An
// intent that never committed is removed.
func TestOpenFinishesACommittedIntentAndDropsAnUncommittedOne(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	ctx := context.Background()
	cfg := PolicyConfig{MaxTxnOps: 10000, MaxTxnBytes: 4 << 20}
	seed := NewPolicies(cli, cfg)
	if err := seed.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := seed.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	cs, err := seed.Graph().Plan(policy.LoadRequest{Policy: rootPolicy, Mode: policy.Append, Text: []byte(hostsPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	// What Commit writes before the copy, by hand.
	var ops []op
	for _, f := range cs.Created {
		v, _ := policy.MarshalFact(f)
		ops = append(ops, op{Key: FactKey(f), Value: v})
	}
	cred, _ := json.Marshal(apikey.Credential{RoleID: "acme:host:web-01"})
	ops = append(ops, op{Key: CredentialKey("acme:host:web-01"), Value: cred})
	half := len(ops) / 2
	chunk0, _ := json.Marshal(ops[:half])
	chunk1, _ := json.Marshal(ops[half:])
	orphan, _ := json.Marshal(ops)
	pending, _ := json.Marshal(guard{Pending: "dead"})
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpPut(chunkKey(intentPrefix+"dead/", 0), string(chunk0)),
		clientv3.OpPut(chunkKey(intentPrefix+"dead/", 1), string(chunk1)),
		clientv3.OpPut(intentPrefix+"dead/commit", `{"chunks":2}`),
		clientv3.OpPut(guardKey, string(pending)),
		clientv3.OpPut(chunkKey(intentPrefix+"never/", 0), string(orphan)),
		// The copy had begun: the first fact is at its key already.
		ops[0].etcd(),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	want := factsOf(t, func() *policy.Graph {
		g := seed.Graph()
		cp := *cs
		cp.Revision = g.Revision()
		if err := g.Apply(&cp); err != nil {
			t.Fatal(err)
		}
		return g
	}())

	// A reader (load without recovery) sees the committed load whole.
	reader := NewPolicies(cli, cfg)
	if err := reader.load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := factsOf(t, reader.Graph()); !equalMaps(got, want) {
		t.Fatalf("a reader of a half-copied load sees %d facts, want %d", len(got), len(want))
	}

	p := NewPolicies(cli, cfg)
	if err := p.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, cli, factPrefix); !equalMaps(got, want) {
		t.Fatalf("after Open etcd holds %d facts, want %d", len(got), len(want))
	}
	if got := factsOf(t, p.Graph()); !equalMaps(got, want) {
		t.Fatal("the opened graph differs from the committed load")
	}
	if left := stored(t, cli, intentPrefix); len(left) != 0 {
		t.Fatalf("intent keys left after Open: %v", slices.Sorted(func(yield func(string) bool) {
			for k := range left {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if _, ok := stored(t, cli, credentialPrefix)[CredentialKey("acme:host:web-01")]; !ok {
		t.Fatal("the committed load's credential was not copied")
	}
	// And the next load goes through.
	if _, err := p.Begin(ctx); err != nil {
		t.Fatal(err)
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
