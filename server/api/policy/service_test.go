package policy_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/policy"
	"github.com/sowerproject/sower/policy/repo"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	policyapi "github.com/sowerproject/sower/server/api/policy"
	"github.com/sowerproject/sower/server/etcdstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

const account = "acme"

// node is one sower node's policy stack over a real etcd: the store with
// its watch, the API-key manager and the service.
type node struct {
	svc   *policyapi.Service
	store *etcdstore.Policies
	keys  *apikey.Manager
}

// startEtcd runs a real etcd member with the node's transaction limits.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	a := testutil.FreeAddrs(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{Name: "n1", Dir: t.TempDir(), ClientAddr: a[0], PeerAddr: a[1],
		MaxTxnOps: 16384, MaxRequestBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e.Client()
}

var pepper = []byte("0123456789abcdef0123456789abcdef")

func newNode(t *testing.T, cli *clientv3.Client, cfg etcdstore.PolicyConfig, opts ...func(*policyapi.Config)) *node {
	t.Helper()
	store := etcdstore.NewPolicies(cli, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if err := store.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureAccount(ctx, account); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("store.Run: %v", err)
		}
	})
	keys, err := apikey.New(apikey.Config{Store: etcdstore.NewCredentials(cli), Pepper: pepper})
	if err != nil {
		t.Fatal(err)
	}
	c := policyapi.Config{Account: account, Store: store, Keys: keys}
	for _, o := range opts {
		o(&c)
	}
	svc, err := policyapi.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return &node{svc: svc, store: store, keys: keys}
}

var bigTxns = etcdstore.PolicyConfig{MaxTxnOps: 16384, MaxTxnBytes: 8 << 20}

// as returns a context authenticated as login ("admin", "host/app").
func as(login string) context.Context {
	id, err := authn.ParseLogin(account, login)
	if err != nil {
		panic(err)
	}
	return authn.NewContext(context.Background(), id)
}

func loadReq(identifier string, mode sowerv1.LoadMode, text string) *sowerv1.LoadPolicyRequest {
	return &sowerv1.LoadPolicyRequest{Account: account, Identifier: identifier, Mode: mode, Text: text}
}

const (
	appendMode  = sowerv1.LoadMode_LOAD_MODE_APPEND
	updateMode  = sowerv1.LoadMode_LOAD_MODE_UPDATE
	replaceMode = sowerv1.LoadMode_LOAD_MODE_REPLACE
)

// etcdState returns every key and value sower keeps in etcd.
func etcdState(t *testing.T, cli *clientv3.Client) map[string]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), "/sower/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

func sameState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

const appPolicy = `
- !policy
  id: app
  body:
  - !layer
  - !host web-01
  - !variable db-password
  - !grant
    role: !layer
    member: !host web-01
  - !permit
    role: !layer
    privilege: [read, execute]
    resource: !variable db-password
- !user alice
- !group ops
- !permit
  role: !group ops
  privilege: create
  resource: !policy app
- !grant
  role: !group ops
  member: !user alice
`

func TestLoadIssuesKeysVersionsAndAuthorizes(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	admin := as("admin")

	resp, err := n.svc.LoadPolicy(admin, loadReq("root", replaceMode, appPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersion() != 1 {
		t.Fatalf("version %d, want 1", resp.GetVersion())
	}
	keys := map[string]string{}
	for _, c := range resp.GetCreatedRoles() {
		keys[c.GetId()] = c.GetApiKey()
	}
	for _, id := range []string{"acme:host:app/web-01", "acme:user:alice"} {
		if err := n.keys.Verify(context.Background(), id, keys[id]); err != nil {
			t.Errorf("the API key returned for %s does not verify: %v", id, err)
		}
	}
	if len(keys) != 2 || resp.GetChanges().GetCreatedCount() == 0 || len(resp.GetChanges().GetCreated()) == 0 {
		t.Fatalf("created roles %v, changes %+v", keys, resp.GetChanges())
	}

	// alice holds create on policy app (through ops): she may append to
	// it, not replace it; she cannot see the root policy at all.
	alice := as("alice")
	tests := map[string]struct {
		ctx  context.Context
		req  *sowerv1.LoadPolicyRequest
		want codes.Code
	}{
		"append with create":        {alice, loadReq("app", appendMode, "- !variable more\n"), codes.OK},
		"replace needs update":      {alice, loadReq("app", replaceMode, "- !variable more\n"), codes.PermissionDenied},
		"invisible policy":          {alice, loadReq("root", appendMode, "- !host x\n"), codes.NotFound},
		"unknown policy":            {admin, loadReq("nope", appendMode, "- !host x\n"), codes.NotFound},
		"deletion in append":        {admin, loadReq("app", appendMode, "- !delete\n  record: !variable more\n"), codes.InvalidArgument},
		"other account":             {admin, &sowerv1.LoadPolicyRequest{Account: "other", Identifier: "root", Mode: appendMode}, codes.NotFound},
		"no mode":                   {admin, &sowerv1.LoadPolicyRequest{Account: account, Identifier: "root"}, codes.InvalidArgument},
		"unauthenticated":           {context.Background(), loadReq("root", appendMode, ""), codes.Unauthenticated},
		"host in its layer appends": {as("host/app/web-01"), loadReq("app", appendMode, "- !variable x\n"), codes.NotFound},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := etcdState(t, cli)
			_, err := n.svc.LoadPolicy(tc.ctx, tc.req)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code %v (%v), want %v", got, err, tc.want)
			}
			if tc.want != codes.OK && !sameState(before, etcdState(t, cli)) {
				t.Fatal("a refused load changed etcd")
			}
		})
	}

	// Every load versions its policy, even one that changes nothing.
	for want := int64(2); want <= 3; want++ {
		resp, err := n.svc.LoadPolicy(admin, loadReq("root", replaceMode, appPolicy))
		if err != nil || resp.GetVersion() != want || len(resp.GetCreatedRoles()) != 0 {
			t.Fatalf("reload: version %d, created %v, err %v; want version %d and no new roles", resp.GetVersion(), resp.GetCreatedRoles(), err, want)
		}
	}
	pol, err := n.svc.GetPolicy(admin, &sowerv1.GetPolicyRequest{Account: account, Identifier: "root"})
	if err != nil || len(pol.GetVersions()) != 3 || pol.GetVersions()[2].GetPolicyText() != appPolicy || pol.GetVersions()[0].GetRole() != "acme:user:admin" {
		t.Fatalf("GetPolicy: %d versions, err %v", len(pol.GetVersions()), err)
	}

	// A replace that drops the host deletes its credential with it.
	if _, err := n.svc.LoadPolicy(admin, loadReq("root", replaceMode, strings.Replace(appPolicy, "  - !host web-01\n", "", 1)+"- !host app/web-01b\n")); err == nil {
		t.Fatal("a grant to a host the text no longer declares was accepted")
	}
	withoutHost := strings.NewReplacer("  - !host web-01\n", "", "  - !grant\n    role: !layer\n    member: !host web-01\n", "").Replace(appPolicy)
	if _, err := n.svc.LoadPolicy(admin, loadReq("root", replaceMode, withoutHost)); err != nil {
		t.Fatal(err)
	}
	if err := n.keys.Verify(context.Background(), "acme:host:app/web-01", keys["acme:host:app/web-01"]); !authn.IsReason(err, authn.ReasonUnknownIdentity) {
		t.Fatalf("the deleted host's key: %v, want unknown identity", err)
	}
}

// Invalid text and references to nothing are InvalidArgument with
// policy_invalid and a position; a bad reference at the end of a large
// file, planned into a load that would be split, leaves etcd as it was.
func TestInvalidPolicyIsRefusedWithItsPositionAndLeavesNoTrace(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	// Small transactions: a valid load this size would be an intent.
	n := newNode(t, cli, etcdstore.PolicyConfig{MaxTxnOps: 64, MaxTxnBytes: 256 << 10})
	admin := as("admin")
	if _, err := n.svc.LoadPolicy(admin, loadReq("root", replaceMode, appPolicy)); err != nil {
		t.Fatal(err)
	}
	var large strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&large, "- !host bulk-%05d\n- !grant\n  role: !layer app\n  member: !host bulk-%05d\n", i, i)
	}
	large.WriteString("- !grant\n  role: !group no-such-group\n  member: !host bulk-00001\n")
	lines := strings.Count(large.String(), "\n")

	tests := map[string]struct {
		text            string
		line, column    int
		messageContains string
	}{
		"syntax":                    {text: "- !host\n  id: [unclosed\n", messageContains: "flow sequence"},
		"unknown tag":               {text: "- !hots web\n", messageContains: "hots"},
		"bad reference at the end":  {text: large.String(), line: lines - 1, column: 9, messageContains: "no-such-group"},
		"bad reference, small file": {text: "- !grant\n  role: !group ghosts\n  member: !user alice\n", line: 2, column: 9, messageContains: "ghosts"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, dry := range []bool{false, true} {
				before := etcdState(t, cli)
				req := loadReq("root", appendMode, tc.text)
				req.Filename, req.DryRun = "bulk.yml", dry
				_, err := n.svc.LoadPolicy(admin, req)
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument {
					t.Fatalf("dry run %v: %v, want InvalidArgument", dry, err)
				}
				var info *errdetails.ErrorInfo
				for _, d := range st.Details() {
					if i, ok := d.(*errdetails.ErrorInfo); ok {
						info = i
					}
				}
				if info == nil || info.GetReason() != policyapi.ReasonPolicyInvalid || !strings.Contains(st.Message(), tc.messageContains) {
					t.Fatalf("status %v, details %v; want policy_invalid mentioning %q", st.Message(), info, tc.messageContains)
				}
				if tc.line > 0 && (info.GetMetadata()["line"] != fmt.Sprint(tc.line) || info.GetMetadata()["column"] != fmt.Sprint(tc.column)) {
					t.Errorf("position %s:%s, want %d:%d (%s)", info.GetMetadata()["line"], info.GetMetadata()["column"], tc.line, tc.column, st.Message())
				}
				if !sameState(before, etcdState(t, cli)) {
					t.Fatal("an invalid load changed etcd")
				}
			}
		})
	}
	if _, ok := n.store.Graph().Resource(policy.NewID(account, policy.KindHost, "bulk-00001")); ok {
		t.Fatal("the graph holds a host of the refused load")
	}
}

// A dry run reports what would change, in facts and in Conjur's records,
// and stores nothing.
func TestDryRunReportsAndStoresNothing(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	admin := as("admin")
	if _, err := n.svc.LoadPolicy(admin, loadReq("root", replaceMode, appPolicy)); err != nil {
		t.Fatal(err)
	}
	before := etcdState(t, cli)
	req := loadReq("app", updateMode, "- !host web-02\n- !grant\n  role: !layer\n  member: !host web-02\n- !delete\n  record: !variable db-password\n")
	req.DryRun = true
	resp, err := n.svc.LoadPolicy(admin, req)
	if err != nil {
		t.Fatal(err)
	}
	if !sameState(before, etcdState(t, cli)) {
		t.Fatal("a dry run changed etcd")
	}
	rc := resp.GetChanges().GetRecords()
	ids := func(rs []*sowerv1.Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.GetId())
		}
		return out
	}
	if got := ids(rc.GetCreated()); len(got) != 1 || got[0] != "acme:host:app/web-02" {
		t.Errorf("created records %v", got)
	}
	if got := ids(rc.GetDeleted()); len(got) != 1 || got[0] != "acme:variable:app/db-password" {
		t.Errorf("deleted records %v", got)
	}
	if got := ids(rc.GetUpdatedAfter()); !contains(got, "acme:layer:app") {
		t.Errorf("updated records %v, want the layer that gains a member", got)
	}
	if len(resp.GetCreatedRoles()) != 1 || resp.GetCreatedRoles()[0].GetApiKey() != "" || resp.GetVersion() != 0 {
		t.Errorf("a dry run answered created roles %v (keys must be empty) and version %d", resp.GetCreatedRoles(), resp.GetVersion())
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// Concurrent loads into the same policy, from one node and from two nodes
// over one etcd: every load applies whole, in some order, or is refused
// (Aborted) without a trace; versions are never shared.
func TestConcurrentLoadsNeverInterleave(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	a := newNode(t, cli, bigTxns)
	b := newNode(t, cli, etcdstore.PolicyConfig{MaxTxnOps: 64, MaxTxnBytes: 256 << 10}) // b writes intents
	admin := as("admin")
	if _, err := a.svc.LoadPolicy(admin, loadReq("root", replaceMode, "- !policy shared\n")); err != nil {
		t.Fatal(err)
	}
	const loads = 12
	var (
		mu       sync.Mutex
		versions = map[int64]int{}
		applied  []int
		done     sync.WaitGroup
	)
	for i := range loads {
		done.Add(1)
		go func() {
			defer done.Done()
			n := a
			if i%2 == 1 {
				n = b
			}
			var text strings.Builder
			for h := range 40 {
				fmt.Fprintf(&text, "- !host l%02d-h%02d\n", i, h)
			}
			resp, err := n.svc.LoadPolicy(admin, loadReq("shared", appendMode, text.String()))
			mu.Lock()
			defer mu.Unlock()
			switch status.Code(err) {
			case codes.OK:
				versions[resp.GetVersion()]++
				applied = append(applied, i)
				if len(resp.GetCreatedRoles()) != 40 {
					t.Errorf("load %d created %d roles, want 40", i, len(resp.GetCreatedRoles()))
				}
			case codes.Aborted:
			default:
				t.Errorf("load %d: %v", i, err)
			}
		}()
	}
	done.Wait()
	for v, c := range versions {
		if c != 1 {
			t.Errorf("version %d was given to %d loads", v, c)
		}
	}
	if len(applied) == 0 {
		t.Fatal("no load succeeded")
	}
	// Each load's hosts are all there or all absent, on both nodes.
	if err := a.store.WaitFor(context.Background(), b.store.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := b.store.WaitFor(context.Background(), a.store.Revision()); err != nil {
		t.Fatal(err)
	}
	for i := range loads {
		for _, n := range []*node{a, b} {
			var present int
			for h := range 40 {
				if _, ok := n.store.Graph().Role(policy.NewID(account, policy.KindHost, fmt.Sprintf("shared/l%02d-h%02d", i, h))); ok {
					present++
				}
			}
			if present != 0 && present != 40 {
				t.Fatalf("load %d is half applied: %d of 40 hosts", i, present)
			}
			if (present == 40) != containsInt(applied, i) {
				t.Fatalf("load %d: %d hosts present, but it succeeded=%v", i, present, containsInt(applied, i))
			}
		}
	}
}

func containsInt(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// The example repository syncs as one load; a host granted
// conjur/seed-generation/consumers may execute the seed service, others
// may not; a second sync changes nothing and versions nothing.
func TestSyncExampleRepository(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	admin := as("admin")
	loads, err := repo.Loads(os.DirFS("../../../examples/policy-repo"), account)
	if err != nil {
		t.Fatal(err)
	}
	req := &sowerv1.SyncPoliciesRequest{Account: account}
	for _, l := range loads {
		pl := &sowerv1.PolicyLoad{Identifier: l.Policy.Name, Mode: map[policy.Mode]sowerv1.LoadMode{
			policy.Append: appendMode, policy.Update: updateMode, policy.Replace: replaceMode}[l.Mode]}
		files := l.Files
		if len(files) == 0 {
			files = []policy.File{{Name: l.Filename, Text: l.Text}}
		}
		for _, f := range files {
			pl.Files = append(pl.Files, &sowerv1.PolicyFile{Name: f.Name, Text: string(f.Text)})
		}
		req.Loads = append(req.Loads, pl)
	}
	dry := proto.Clone(req).(*sowerv1.SyncPoliciesRequest)
	dry.DryRun = true
	before := etcdState(t, cli)
	dr, err := n.svc.SyncPolicies(admin, dry)
	if err != nil {
		t.Fatal(err)
	}
	if !sameState(before, etcdState(t, cli)) || dr.GetChanges().GetCreatedCount() == 0 || len(dr.GetVersions()) != 0 {
		t.Fatalf("dry-run sync: %d created, %d versions; or etcd changed", dr.GetChanges().GetCreatedCount(), len(dr.GetVersions()))
	}

	first, err := n.svc.SyncPolicies(admin, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.GetChanges().GetCreatedCount() != dr.GetChanges().GetCreatedCount() || len(first.GetVersions()) < 5 || len(first.GetCreatedRoles()) == 0 {
		t.Fatalf("first sync: %d created (dry run said %d), %d versions, %d new roles", first.GetChanges().GetCreatedCount(),
			dr.GetChanges().GetCreatedCount(), len(first.GetVersions()), len(first.GetCreatedRoles()))
	}
	state := etcdState(t, cli)
	second, err := n.svc.SyncPolicies(admin, req)
	if err != nil {
		t.Fatal(err)
	}
	if c := second.GetChanges(); c.GetCreatedCount()+c.GetUpdatedCount()+c.GetDeletedCount() != 0 || len(second.GetVersions()) != 0 || len(second.GetCreatedRoles()) != 0 {
		t.Fatalf("second sync changed %+v, versions %v", c, second.GetVersions())
	}
	if !sameState(state, etcdState(t, cli)) {
		t.Fatal("a sync that changes nothing wrote to etcd")
	}

	seeds := &sowerv1.CheckPermissionRequest{Account: account, Kind: "webservice", Identifier: "conjur/seed-generation", Privilege: "execute"}
	for role, want := range map[string]bool{
		"host:follower-dc1-01": true,
		"host:conjur/authn-k8s/production-cluster/apps/conjur-followers/service_account/conjur-follower": true,
		"host:production/application-code/app-01":                                                        false,
	} {
		if _, ok := n.store.Graph().Role(mustRef(role)); !ok && want {
			t.Fatalf("%s does not exist after the sync", role)
		}
		r := proto.Clone(seeds).(*sowerv1.CheckPermissionRequest)
		r.Role = role
		resp, err := n.svc.CheckPermission(admin, r)
		if err != nil && want {
			t.Fatalf("check for %s: %v", role, err)
		}
		if resp.GetAllowed() != want {
			t.Errorf("%s execute on the seed service: %v, want %v", role, resp.GetAllowed(), want)
		}
	}
}

func mustRef(r string) policy.ID {
	id, err := policy.ParseRef(r, account, "")
	if err != nil {
		panic(err)
	}
	return id
}

// What a caller may see and ask.
func TestReadsShowOnlyWhatTheCallerSees(t *testing.T) {
	t.Parallel()
	cli := startEtcd(t)
	n := newNode(t, cli, bigTxns)
	if _, err := n.svc.LoadPolicy(as("admin"), loadReq("root", replaceMode, appPolicy+"- !variable hidden\n")); err != nil {
		t.Fatal(err)
	}
	host := as("host/app/web-01")
	check := func(ctx context.Context, kind, id, priv, role string) (bool, codes.Code) {
		resp, err := n.svc.CheckPermission(ctx, &sowerv1.CheckPermissionRequest{Account: account, Kind: kind, Identifier: id, Privilege: priv, Role: role})
		return resp.GetAllowed(), status.Code(err)
	}
	tests := map[string]struct {
		ctx            context.Context
		kind, id, priv string
		role           string
		allowed        bool
		code           codes.Code
	}{
		"host executes its secret":        {host, "variable", "app/db-password", "execute", "", true, codes.OK},
		"host may not update it":          {host, "variable", "app/db-password", "update", "", false, codes.OK},
		"host cannot see another secret":  {host, "variable", "hidden", "read", "", false, codes.NotFound},
		"admin asks for the host":         {as("admin"), "variable", "app/db-password", "execute", "host:app/web-01", true, codes.OK},
		"host asks for its layer":         {host, "variable", "app/db-password", "read", "layer:app", true, codes.OK},
		"host may not ask about admin":    {host, "variable", "app/db-password", "read", "acme:user:admin", false, codes.PermissionDenied},
		"asking about a role that is not": {as("admin"), "variable", "app/db-password", "read", "host:ghost", false, codes.PermissionDenied},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			allowed, code := check(tc.ctx, tc.kind, tc.id, tc.priv, tc.role)
			if allowed != tc.allowed || code != tc.code {
				t.Fatalf("allowed %v code %v, want %v %v", allowed, code, tc.allowed, tc.code)
			}
		})
	}

	list, err := n.svc.ListResources(host, &sowerv1.ListResourcesRequest{Account: account})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetResources()) != 1 || list.GetResources()[0].GetId() != "acme:variable:app/db-password" {
		t.Fatalf("the host lists %d resources", len(list.GetResources()))
	}
	if _, err := n.svc.ListResources(host, &sowerv1.ListResourcesRequest{Account: account, Role: "user:admin"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("listing as a role the caller does not hold: %v", err)
	}
	all, err := n.svc.ListResources(as("admin"), &sowerv1.ListResourcesRequest{Account: account, Kind: "variable", CountOnly: true})
	if err != nil || all.GetCount() != 2 || len(all.GetResources()) != 0 {
		t.Fatalf("admin counts %d variables (%v), want 2 and no list", all.GetCount(), err)
	}
	if _, err := n.svc.GetRole(host, &sowerv1.GetRoleRequest{Account: account, Kind: "user", Identifier: "alice"}); status.Code(err) != codes.NotFound {
		t.Fatalf("the host reads alice: %v, want NotFound", err)
	}
	ms, err := n.svc.ListRoleMemberships(host, &sowerv1.ListRoleMembershipsRequest{Account: account, Kind: "host", Identifier: "app/web-01", All: true})
	if err != nil || !contains(ms.GetRoleIds(), "acme:layer:app") {
		t.Fatalf("the host's own memberships: %v (%v)", ms.GetRoleIds(), err)
	}
	ok, err := n.svc.Allowed(context.Background(), "acme:host:app/web-01", "execute", "acme:variable:app/db-password")
	if err != nil || !ok {
		t.Fatalf("Authorizer.Allowed = %v, %v", ok, err)
	}
	if _, err := n.svc.Allowed(context.Background(), "web-01", "execute", "x"); err == nil {
		t.Fatal("Allowed accepted a malformed role id")
	}
}
