package secrets_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/secrets"
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

const testPolicy = `
- !group readers
- !group writers
- !user alice
- !user bob
- !user carol
- !variable db/password
- !variable
  id: tls/cert
  annotations:
    conjur/mime_type: application/x-pem-file
- !variable empty
- !variable hidden
- !grant
  role: !group readers
  member: !user alice
- !grant
  role: !group writers
  member: !user bob
- !permit
  role: !group readers
  privileges: [read, execute]
  resources: [!variable db/password, !variable tls/cert, !variable empty]
- !permit
  role: !group writers
  privileges: [read, update]
  resources: [!variable db/password]
# carol sees the variable (read) but may not fetch its value.
- !permit
  role: !user carol
  privileges: [read]
  resources: [!variable db/password]
`

func newGraph(t *testing.T) *policy.Graph {
	t.Helper()
	g := policy.NewGraph()
	cs, err := g.PlanAccount(account)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	cs, err = g.Plan(policy.LoadRequest{Policy: policy.NewID(account, policy.KindPolicy, policy.RootPolicy), Mode: policy.Append, Text: []byte(testPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	return g
}

func newService(t *testing.T, rec ...audit.Recorder) *secrets.Service {
	t.Helper()
	a := testutil.FreeAddrs(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{Name: "n1", Dir: t.TempDir(), ClientAddr: a[0], PeerAddr: a[1]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	kr, err := pki.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	store, err := etcdstore.NewSecrets(e.Client(), kr, etcdstore.SecretsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGraph(t)
	c := secrets.Config{Account: account, Store: store, Graph: func() *policy.Graph { return g }}
	if len(rec) > 0 {
		c.Audit = rec[0]
	}
	svc, err := secrets.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func as(login string) context.Context {
	id, err := authn.ParseLogin(account, login)
	if err != nil {
		panic(err)
	}
	return authn.NewContext(context.Background(), id)
}

func set(id, value string) *sowerv1.SetSecretRequest {
	return &sowerv1.SetSecretRequest{Account: account, Kind: "variable", Identifier: id, Value: []byte(value)}
}

func get(id string, version int64) *sowerv1.GetSecretRequest {
	return &sowerv1.GetSecretRequest{Account: account, Kind: "variable", Identifier: id, Version: version}
}

func TestSetSecretNeedsUpdate(t *testing.T) {
	svc := newService(t)
	tests := map[string]struct {
		ctx  context.Context
		req  *sowerv1.SetSecretRequest
		want codes.Code
	}{
		"owner (admin)":           {as("admin"), set("db/password", "s3cret"), codes.OK},
		"writer":                  {as("bob"), set("db/password", "s3cret"), codes.OK},
		"reader lacks update":     {as("alice"), set("db/password", "x"), codes.PermissionDenied},
		"invisible variable":      {as("alice"), set("hidden", "x"), codes.NotFound},
		"no such variable":        {as("admin"), set("nope", "x"), codes.NotFound},
		"other account":           {as("admin"), &sowerv1.SetSecretRequest{Account: "other", Kind: "variable", Identifier: "db/password", Value: []byte("x")}, codes.NotFound},
		"empty value":             {as("admin"), set("db/password", ""), codes.InvalidArgument},
		"too large":               {as("admin"), set("db/password", string(make([]byte, secrets.MaxValueBytes+1))), codes.InvalidArgument},
		"no identifier":           {as("admin"), set("", "x"), codes.InvalidArgument},
		"unauthenticated":         {context.Background(), set("db/password", "x"), codes.Unauthenticated},
		"a host that is no role":  {as("host/ghost"), set("db/password", "x"), codes.NotFound},
		"sees it, may not update": {as("carol"), set("db/password", "x"), codes.PermissionDenied},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := svc.SetSecret(tc.ctx, tc.req)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("SetSecret: %v, want %s", err, tc.want)
			}
		})
	}
}

func TestGetSecretNeedsExecuteAndAnswersVersions(t *testing.T) {
	svc := newService(t)
	admin := as("admin")
	for _, v := range []string{"one", "two", "three"} {
		if _, err := svc.SetSecret(admin, set("db/password", v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.SetSecret(admin, set("tls/cert", "-----BEGIN CERTIFICATE-----")); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		ctx       context.Context
		req       *sowerv1.GetSecretRequest
		want      codes.Code
		wantValue string
		wantMime  string
	}{
		"latest":                    {as("alice"), get("db/password", 0), codes.OK, "three", "application/octet-stream"},
		"version 1":                 {as("alice"), get("db/password", 1), codes.OK, "one", ""},
		"missing version":           {as("alice"), get("db/password", 9), codes.NotFound, "", ""},
		"negative version":          {as("alice"), get("db/password", -1), codes.InvalidArgument, "", ""},
		"mime type from annotation": {as("alice"), get("tls/cert", 0), codes.OK, "-----BEGIN CERTIFICATE-----", "application/x-pem-file"},
		"no value yet":              {as("alice"), get("empty", 0), codes.NotFound, "", ""},
		"writer lacks execute":      {as("bob"), get("db/password", 0), codes.PermissionDenied, "", ""},
		"sees it, lacks execute":    {as("carol"), get("db/password", 0), codes.PermissionDenied, "", ""},
		"invisible":                 {as("alice"), get("hidden", 0), codes.NotFound, "", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := svc.GetSecret(tc.ctx, tc.req)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("GetSecret: %v, want %s", err, tc.want)
			}
			if err != nil {
				return
			}
			if string(resp.GetValue()) != tc.wantValue || (tc.wantMime != "" && resp.GetMimeType() != tc.wantMime) {
				t.Fatalf("GetSecret = %q (%s), want %q (%s)", resp.GetValue(), resp.GetMimeType(), tc.wantValue, tc.wantMime)
			}
		})
	}
}

func TestBatchGetSecretsIsAllOrNothing(t *testing.T) {
	svc := newService(t)
	admin := as("admin")
	for id, v := range map[string]string{"db/password": "pw", "tls/cert": "cert", "hidden": "h"} {
		if _, err := svc.SetSecret(admin, set(id, v)); err != nil {
			t.Fatal(err)
		}
	}
	batch := func(ids ...string) *sowerv1.BatchGetSecretsRequest {
		return &sowerv1.BatchGetSecretsRequest{VariableIds: ids}
	}
	tests := map[string]struct {
		ctx  context.Context
		req  *sowerv1.BatchGetSecretsRequest
		want codes.Code
		n    int
	}{
		"all readable":        {as("alice"), batch("acme:variable:db/password", "acme:variable:tls/cert"), codes.OK, 2},
		"duplicates collapse": {as("alice"), batch("acme:variable:db/password", "acme:variable:db/password"), codes.OK, 1},
		"one without a value": {as("alice"), batch("acme:variable:db/password", "acme:variable:empty"), codes.NotFound, 0},
		"one invisible":       {as("alice"), batch("acme:variable:db/password", "acme:variable:hidden"), codes.NotFound, 0},
		"one not executable":  {as("bob"), batch("acme:variable:db/password"), codes.PermissionDenied, 0},
		// Conjur checks execute on every variable found before it reports
		// one missing.
		"missing, then not executable": {as("bob"), batch("acme:variable:nope", "acme:variable:db/password"), codes.PermissionDenied, 0},
		"not an id":                    {as("alice"), batch("db/password"), codes.NotFound, 0},
		"another account":              {as("alice"), batch("other:variable:db/password"), codes.NotFound, 0},
		"nothing asked":                {as("alice"), batch(), codes.InvalidArgument, 0},
		"owner reads all three":        {admin, batch("acme:variable:db/password", "acme:variable:tls/cert", "acme:variable:hidden"), codes.OK, 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := svc.BatchGetSecrets(tc.ctx, tc.req)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("BatchGetSecrets: %v, want %s", err, tc.want)
			}
			if len(resp.GetValues()) != tc.n {
				t.Fatalf("%d values, want %d", len(resp.GetValues()), tc.n)
			}
		})
	}
}

type recorded struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorded) Record(e audit.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

// Every read is audited, allowed or refused, with who, what and which
// version, never the value; writes are not reads.
func TestReadsAreAudited(t *testing.T) {
	rec := &recorded{}
	svc := newService(t, rec)
	for _, v := range []string{"one", "two"} {
		if _, err := svc.SetSecret(as("admin"), set("db/password", v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.GetSecret(as("alice"), get("db/password", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetSecret(as("carol"), get("db/password", 0)); status.Code(err) != codes.PermissionDenied {
		t.Fatal(err)
	}
	if _, err := svc.BatchGetSecrets(as("alice"), &sowerv1.BatchGetSecretsRequest{VariableIds: []string{account + ":variable:db/password"}}); err != nil {
		t.Fatal(err)
	}
	want := []audit.Event{
		{Kind: audit.KindSecretRead, Action: "read", Outcome: audit.OutcomeSuccess, Identity: account + ":user:alice", Resource: account + ":variable:db/password", Version: 1},
		{Kind: audit.KindSecretRead, Action: "read", Outcome: audit.OutcomeFailure, Identity: account + ":user:carol", Resource: account + ":variable:db/password", Reason: "no execute privilege"},
		{Kind: audit.KindSecretRead, Action: "batch-read", Outcome: audit.OutcomeSuccess, Identity: account + ":user:alice", Resource: account + ":variable:db/password"},
	}
	if len(rec.events) != len(want) {
		t.Fatalf("recorded %+v, want %d events", rec.events, len(want))
	}
	for i, w := range want {
		if rec.events[i] != w {
			t.Errorf("event %d = %+v, want %+v", i, rec.events[i], w)
		}
	}
}
