package k8s_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/internal/jwttest"
	"github.com/sowerproject/sower/authn/jwt"
	"github.com/sowerproject/sower/authn/k8s"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const uidPrefix = "5f0c7a3e-0000-4000-8000-"

func uid(n int) string { return fmt.Sprintf("%s%012d", uidPrefix, n) }

// The pods of testdata/kube, as their tokens describe them.
var (
	webPod    = jwttest.Pod{Namespace: "shop", Name: "web-7d9c8b-x2x4z", UID: uid(1), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	dbPod     = jwttest.Pod{Namespace: "shop", Name: "db-0", UID: uid(4), ServiceAccount: "db", ServiceAccountUID: uid(102)}
	debugPod  = jwttest.Pod{Namespace: "shop", Name: "debug", UID: uid(6), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	bareRSPod = jwttest.Pod{Namespace: "shop", Name: "bare-rs-q8f2k", UID: uid(7), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	stalePod  = jwttest.Pod{Namespace: "shop", Name: "stale-6f8d7c-p9z1m", UID: uid(9), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	legacyPod = jwttest.Pod{Namespace: "ops", Name: "legacy-3-k2v9p", UID: uid(11), ServiceAccount: "default", ServiceAccountUID: uid(103)}
	// A pod that was deleted, and one replaced by a pod of the same name.
	gonePod     = jwttest.Pod{Namespace: "shop", Name: "web-7d9c8b-gone1", UID: uid(50), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	replacedPod = jwttest.Pod{Namespace: "shop", Name: "web-7d9c8b-x2x4z", UID: uid(51), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	// Pods whose named object is gone or was replaced: service account
	// "batch" deleted; "rotated" deleted and created again (new uid);
	// DeploymentConfig "orphan" deleted (its replication controller
	// remains); Deployment "gone" deleted (its replica set remains); and a
	// pod of an earlier Deployment "web", deleted and created again.
	batchPod   = jwttest.Pod{Namespace: "shop", Name: "batch-x7k2p", UID: uid(20), ServiceAccount: "batch", ServiceAccountUID: uid(104)}
	rotatedPod = jwttest.Pod{Namespace: "shop", Name: "rotated-m3n4b", UID: uid(21), ServiceAccount: "rotated", ServiceAccountUID: uid(105)}
	orphanPod  = jwttest.Pod{Namespace: "ops", Name: "orphan-2-h7d4s", UID: uid(22), ServiceAccount: "default", ServiceAccountUID: uid(103)}
	goneDPod   = jwttest.Pod{Namespace: "shop", Name: "gone-5c4b3a-r2d2q", UID: uid(25), ServiceAccount: "web", ServiceAccountUID: uid(101)}
	oldWebPod  = jwttest.Pod{Namespace: "shop", Name: "old-5b6c7d-k1l2m", UID: uid(29), ServiceAccount: "web", ServiceAccountUID: uid(101)}
)

// kubeAPI serves the Kubernetes objects of testdata/kube at their API paths
// over TLS, as a kube-apiserver would (core, apps and OpenShift's
// apps.openshift.io groups), and 404 Status objects for anything else. It
// records the paths it was asked for.
type kubeAPI struct {
	*httptest.Server
	requests atomic.Int64
	fail     atomic.Bool
	mu       sync.Mutex
	paths    []string
}

var apiPath = regexp.MustCompile(`^/(?:api/v1|apis/apps/v1|apis/apps\.openshift\.io/v1)/namespaces/([a-z0-9-]+)/([a-z]+)/([a-z0-9-]+)$`)

func newKubeAPI(t testing.TB) (*kubeAPI, k8s.API) {
	t.Helper()
	k := &kubeAPI{}
	k.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.requests.Add(1)
		k.mu.Lock()
		k.paths = append(k.paths, r.Method+" "+r.URL.Path)
		k.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if k.fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(status(500, "InternalError", "etcdserver: request timed out"))
			return
		}
		m := apiPath.FindStringSubmatch(r.URL.Path)
		if r.Method == http.MethodGet && m != nil {
			if body, err := os.ReadFile(filepath.Join("testdata", "kube", m[1], m[2], m[3]+".json")); err == nil {
				_, _ = w.Write(body)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		name := "unknown"
		if m != nil {
			name = m[3]
		}
		_ = json.NewEncoder(w).Encode(status(404, "NotFound", fmt.Sprintf("%q not found", name)))
	}))
	k.Config.ErrorLog = log.New(io.Discard, "", 0)
	k.StartTLS()
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: k.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12}}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		k.Close()
	})
	return k, k8s.NewClient(k.URL, &http.Client{Transport: transport}, 0, 0)
}

// asked returns the requests since the last call.
func (k *kubeAPI) asked() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.paths
	k.paths = nil
	return p
}

func status(code int, reason, msg string) map[string]any {
	return map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure", "message": msg, "reason": reason, "code": code}
}

// hosts is the policy: host annotations and who may authenticate.
type hosts struct {
	mu        sync.Mutex
	ann       map[string]map[string]string
	permitted map[string]bool
	err       error
}

func (h *hosts) Annotations(_ context.Context, id string) (map[string]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return nil, h.err
	}
	a, ok := h.ann[id]
	if !ok {
		return nil, fmt.Errorf("host %q: %w", id, k8s.ErrUnknownHost)
	}
	return a, nil
}

func (h *hosts) CanAuthenticate(_ context.Context, id, ws string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return ws == "conjur/authn-k8s/prod" && h.permitted[id], nil
}

const apps = "host/conjur/authn-k8s/prod/apps/"

func policy() *hosts {
	h := &hosts{ann: map[string]map[string]string{}, permitted: map[string]bool{}}
	add := func(id string, ann map[string]string, permitted bool) {
		h.ann[id] = ann
		h.permitted[id] = permitted
	}
	for _, id := range []string{
		"shop/*/*", "shop/deployment/web", "ops/deployment_config/legacy", "shop/stateful_set/db",
		"shop/pod/web-7d9c8b-x2x4z", "shop/service_account/web", "shop/deployment/api", "shop/stateful_set/web",
		"shop/service_account/db", "shop/pod/other", "other/*/*", "shop/deployment_config/legacy",
		"shop/replica_set/web-7d9c8b", "shop/deployment/*", "shop/*/web", "shop/*/*/extra",
		"shop/service_account/batch", "shop/service_account/rotated", "ops/deployment_config/orphan", "shop/deployment/gone",
	} {
		add(apps+id, nil, true)
	}
	// Hosts elsewhere in the policy: Conjur reads the last three parts.
	for _, id := range []string{"shop/*/*", "team-a/shop/deployment/web", "team-a/ops/deployment_config/legacy", "shop/stateful_set/db", "web", "team-a/web"} {
		add("host/"+id, nil, true)
	}
	add("host/team-b/shop/*/*", nil, false)
	add("host/annotated/orphan", map[string]string{"authn-k8s/namespace": "ops", "authn-k8s/deployment-config": "orphan"}, true)
	add(apps+"shop/deployment/no-permission", nil, false)
	add("host/annotated/web", map[string]string{"authn-k8s/namespace": "shop", "authn-k8s/deployment": "web", "authn-k8s/service-account": "web"}, true)
	add("host/annotated/db", map[string]string{"authn-k8s/namespace": "shop", "authn-k8s/prod/stateful-set": "db", "authn-k8s/authentication-container-name": "authenticator"}, true)
	add("host/annotated/legacy", map[string]string{"authn-k8s/prod/namespace": "ops", "authn-k8s/deployment-config": "legacy"}, true)
	add("host/annotated/service-specific-wins", map[string]string{"authn-k8s/namespace": "other", "authn-k8s/prod/namespace": "shop"}, true)
	add("host/annotated/two-controllers", map[string]string{"authn-k8s/namespace": "shop", "authn-k8s/deployment": "web", "authn-k8s/stateful-set": "db"}, true)
	add("host/annotated/typo", map[string]string{"authn-k8s/namespace": "shop", "authn-k8s/deploymnet": "web"}, true)
	add("host/annotated/no-namespace", map[string]string{"authn-k8s/deployment": "web"}, true)
	add("host/annotated/other-service-only", map[string]string{"authn-k8s/dev/namespace": "shop"}, true)
	// An annotation-form host under the apps prefix: annotations win over the id.
	add(apps+"ops/*/*", map[string]string{"authn-k8s/namespace": "shop"}, true)
	return h
}

type fixture struct {
	key  jwttest.Key
	kube *kubeAPI
	auth *k8s.Authenticator
	pol  *hosts
}

func newFixture(t testing.TB, settings jwt.Settings, withKube bool) *fixture {
	t.Helper()
	f := &fixture{key: jwttest.RSA("apiserver-key", 0), pol: policy()}
	if settings.JWKSURI == "" && settings.PublicKeys == "" {
		settings.PublicKeys = jwttest.PublicKeys(f.key)
	}
	if settings.Issuer == "" {
		settings.Issuer = jwttest.Issuer
	}
	settings.Audience = jwttest.Audience
	j, err := jwt.New(settings, jwt.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	cfg := k8s.Config{ServiceID: "prod", JWT: j, Hosts: f.pol}
	if withKube {
		f.kube, cfg.Kube = newKubeAPI(t)
	}
	if f.auth, err = k8s.New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) token(t testing.TB, p jwttest.Pod, mod func(map[string]any)) string {
	c := jwttest.SAClaims(p, now)
	if mod != nil {
		mod(c)
	}
	return f.key.Sign(t, c)
}

func reasonOf(err error) string {
	r, d := authn.ReasonOf(err)
	return string(r) + ": " + d
}

func TestSixHostForms(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	tests := map[string]struct {
		pod  jwttest.Pod
		host string
		ctl  k8s.Controllers
	}{
		"namespace":                  {pod: webPod, host: apps + "shop/*/*"},
		"deployment":                 {pod: webPod, host: apps + "shop/deployment/web", ctl: k8s.Controllers{ReplicaSet: "web-7d9c8b", Deployment: "web"}},
		"deployment_config":          {pod: legacyPod, host: apps + "ops/deployment_config/legacy", ctl: k8s.Controllers{ReplicationController: "legacy-3", DeploymentConfig: "legacy"}},
		"stateful_set":               {pod: dbPod, host: apps + "shop/stateful_set/db", ctl: k8s.Controllers{StatefulSet: "db"}},
		"pod":                        {pod: webPod, host: apps + "shop/pod/web-7d9c8b-x2x4z"},
		"service_account":            {pod: webPod, host: apps + "shop/service_account/web"},
		"host without prefix in URL": {pod: webPod, host: "conjur/authn-k8s/prod/apps/shop/*/*"},
		"annotations: deployment and service account": {pod: webPod, host: "host/annotated/web", ctl: k8s.Controllers{ReplicaSet: "web-7d9c8b", Deployment: "web"}},
		"annotations: service-specific stateful set":  {pod: dbPod, host: "host/annotated/db", ctl: k8s.Controllers{StatefulSet: "db"}},
		"annotations: deployment config":              {pod: legacyPod, host: "host/annotated/legacy", ctl: k8s.Controllers{ReplicationController: "legacy-3", DeploymentConfig: "legacy"}},
		"annotations: service-specific wins":          {pod: debugPod, host: "host/annotated/service-specific-wins"},
		"annotations win over the id":                 {pod: webPod, host: apps + "ops/*/*"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, tc.pod, nil), Host: tc.host})
			if err != nil {
				t.Fatalf("Authenticate = %v (%s)", err, reasonOf(err))
			}
			wantHost := tc.host
			if wantHost[:5] != "host/" {
				wantHost = "host/" + wantHost
			}
			if res.HostID != wantHost || res.Workload.Pod != tc.pod.Name || res.Workload.Namespace != tc.pod.Namespace {
				t.Fatalf("result %+v", res)
			}
			if res.Controllers != tc.ctl {
				t.Fatalf("controllers = %+v, want %+v", res.Controllers, tc.ctl)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	other := jwttest.RSA("other-key", 1)
	tests := map[string]struct {
		token  func(t *testing.T) string
		host   string
		reason authn.Reason
	}{
		// The token itself.
		"expired": {host: apps + "shop/*/*", reason: authn.ReasonExpired,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })
			}},
		"not yet valid": {host: apps + "shop/*/*", reason: authn.ReasonNotYetValid,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })
			}},
		"wrong audience": {host: apps + "shop/*/*", reason: authn.ReasonAudience,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc"} })
			}},
		"wrong issuer": {host: apps + "shop/*/*", reason: authn.ReasonIssuer,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) { c["iss"] = "https://other-cluster" })
			}},
		"unknown key": {host: apps + "shop/*/*", reason: authn.ReasonUnknownKey,
			token: func(t *testing.T) string { return other.Sign(t, jwttest.SAClaims(webPod, now)) }},
		"alg none": {host: apps + "shop/*/*", reason: authn.ReasonAlgorithm,
			token: func(t *testing.T) string { return jwttest.Unsigned("apiserver-key", jwttest.SAClaims(webPod, now)) }},
		"HMAC-signed": {host: apps + "shop/*/*", reason: authn.ReasonAlgorithm,
			token: func(t *testing.T) string {
				return jwttest.HMAC("apiserver-key", []byte(jwttest.PublicKeys(f.key)), jwttest.SAClaims(webPod, now))
			}},
		"malformed": {host: apps + "shop/*/*", reason: authn.ReasonMalformed,
			token: func(t *testing.T) string { return "eyJhbGciOiJSUzI1NiJ9.not-a-token" }},
		"not bound to a pod": {host: apps + "shop/*/*", reason: authn.ReasonMissingClaim,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) { delete(c["kubernetes.io"].(map[string]any), "pod") })
			}},
		"legacy secret token": {host: apps + "shop/*/*", reason: authn.ReasonMissingClaim,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) {
					delete(c, "kubernetes.io")
					c["kubernetes.io/serviceaccount/namespace"] = "shop"
				})
			}},
		"sub disagrees with claims": {host: apps + "shop/*/*", reason: authn.ReasonClaimMismatch,
			token: func(t *testing.T) string {
				return f.token(t, webPod, func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" })
			}},
		// The host.
		"no host":                            {host: "", reason: authn.ReasonInvalidHostID},
		"unknown host":                       {host: apps + "shop/deployment/nope", reason: authn.ReasonUnknownIdentity},
		"not permitted":                      {host: apps + "shop/deployment/no-permission", reason: authn.ReasonNotPermitted},
		"unknown resource":                   {host: apps + "shop/replica_set/web-7d9c8b", reason: authn.ReasonInvalidHostID},
		"wildcard name":                      {host: apps + "shop/deployment/*", reason: authn.ReasonInvalidHostID},
		"wildcard kind":                      {host: apps + "shop/*/web", reason: authn.ReasonInvalidHostID},
		"four parts":                         {host: apps + "shop/*/*/extra", reason: authn.ReasonInvalidHostID},
		"two controllers":                    {host: "host/annotated/two-controllers", reason: authn.ReasonInvalidHostID},
		"typo annotation":                    {host: "host/annotated/typo", reason: authn.ReasonInvalidHostID},
		"annotations without namespace":      {host: "host/annotated/no-namespace", reason: authn.ReasonInvalidHostID},
		"only another service's annotations": {host: "host/annotated/other-service-only", reason: authn.ReasonInvalidHostID},
		// The workload.
		"other namespace":            {host: apps + "other/*/*", reason: authn.ReasonWorkloadMismatch},
		"other deployment":           {host: apps + "shop/deployment/api", reason: authn.ReasonWorkloadMismatch},
		"deployment vs stateful set": {host: apps + "shop/stateful_set/web", reason: authn.ReasonWorkloadMismatch},
		"other service account":      {host: apps + "shop/service_account/db", reason: authn.ReasonWorkloadMismatch},
		"other pod":                  {host: apps + "shop/pod/other", reason: authn.ReasonWorkloadMismatch},
		"db pod as deployment": {host: apps + "shop/deployment/web", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, dbPod, nil) }},
		"bare pod as deployment": {host: apps + "shop/deployment/web", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, debugPod, nil) }},
		"replica set without deployment": {host: apps + "shop/deployment/web", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, bareRSPod, nil) }},
		"owner uid mismatch": {host: apps + "shop/deployment/web", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, stalePod, nil) }},
		"deployment config in another namespace": {host: apps + "shop/deployment_config/legacy", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, legacyPod, nil) }},
		"deleted pod": {host: apps + "shop/*/*", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, gonePod, nil) }},
		"replaced pod": {host: apps + "shop/*/*", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string { return f.token(t, replacedPod, nil) }},
		"service account differs from pod spec": {host: apps + "shop/*/*", reason: authn.ReasonWorkloadMismatch,
			token: func(t *testing.T) string {
				p := webPod
				p.ServiceAccount = "admin"
				return f.token(t, p, nil)
			}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tok := f.token(t, webPod, nil)
			if tc.token != nil {
				tok = tc.token(t)
			}
			res, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: tok, Host: tc.host})
			if !errors.Is(err, authn.ErrUnauthenticated) || !authn.IsReason(err, tc.reason) {
				t.Fatalf("Authenticate = %+v, %v (%s); want refusal %s", res, err, reasonOf(err), tc.reason)
			}
			if err.Error() != authn.ErrUnauthenticated.Error() {
				t.Fatalf("refusal text %q is not generic", err)
			}
		})
	}
}

func TestKubernetesAPIDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	f.kube.fail.Store(true)
	_, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, webPod, nil), Host: apps + "shop/deployment/web"})
	if !authn.IsReason(err, authn.ReasonUnavailable) {
		t.Fatalf("Authenticate = %v (%s), want unavailable", err, reasonOf(err))
	}
}

func TestWithoutKubernetesAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, false)
	ctx := context.Background()
	// Forms the token alone decides work without the API.
	for _, host := range []string{apps + "shop/*/*", apps + "shop/pod/web-7d9c8b-x2x4z", apps + "shop/service_account/web"} {
		if _, err := f.auth.Authenticate(ctx, k8s.Request{Token: f.token(t, webPod, nil), Host: host}); err != nil {
			t.Fatalf("%s: %v (%s)", host, err, reasonOf(err))
		}
	}
	// Controllers need it.
	_, err := f.auth.Authenticate(ctx, k8s.Request{Token: f.token(t, webPod, nil), Host: apps + "shop/deployment/web"})
	if !authn.IsReason(err, authn.ReasonUnavailable) {
		t.Fatalf("deployment without API = %v (%s)", err, reasonOf(err))
	}
}

func TestHostsError(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	f.pol.err = errors.New("etcd: no leader")
	_, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, webPod, nil), Host: apps + "shop/*/*"})
	if err == nil || errors.Is(err, authn.ErrUnauthenticated) {
		t.Fatalf("policy failure = %v, want a non-refusal error", err)
	}
}

func TestTokenAppProperty(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{TokenAppProperty: "kubernetes.io/namespace", IdentityPath: "conjur/authn-k8s/prod/apps"}, true)
	f.pol.ann["host/conjur/authn-k8s/prod/apps/shop"] = map[string]string{"authn-k8s/namespace": "shop", "authn-k8s/service-account": "web"}
	f.pol.permitted["host/conjur/authn-k8s/prod/apps/shop"] = true
	res, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, webPod, nil)})
	if err != nil {
		t.Fatalf("Authenticate = %v (%s)", err, reasonOf(err))
	}
	if res.HostID != "host/conjur/authn-k8s/prod/apps/shop" {
		t.Fatalf("HostID = %q", res.HostID)
	}
	_, err = f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, dbPod, nil)})
	if !authn.IsReason(err, authn.ReasonWorkloadMismatch) {
		t.Fatalf("db pod = %v (%s)", err, reasonOf(err))
	}
}

// TestJWKSFromAPIServer runs the whole flow with the keys fetched over TLS,
// as from https://kubernetes.default.svc/openid/v1/jwks.
func TestJWKSFromAPIServer(t *testing.T) {
	t.Parallel()
	key := jwttest.RSA("apiserver-key", 0)
	srv := jwttest.NewJWKSServer(t, key)
	f := newFixture(t, jwt.Settings{JWKSURI: srv.URI(), CACert: srv.CACert()}, true)
	if _, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, dbPod, nil), Host: apps + "shop/stateful_set/db"}); err != nil {
		t.Fatalf("Authenticate = %v (%s)", err, reasonOf(err))
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	j, err := jwt.New(jwt.Settings{JWKSURI: "https://k8s/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	tests := map[string]struct {
		cfg  k8s.Config
		want error
	}{
		"no service id": {cfg: k8s.Config{JWT: j, Hosts: policy()}, want: k8s.ErrServiceIDRequired},
		"no jwt":        {cfg: k8s.Config{ServiceID: "prod", Hosts: policy()}, want: k8s.ErrJWTRequired},
		"no hosts":      {cfg: k8s.Config{ServiceID: "prod", JWT: j}, want: k8s.ErrHostsRequired},
		"ok":            {cfg: k8s.Config{ServiceID: "prod", JWT: j, Hosts: policy()}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := k8s.New(tc.cfg); !errors.Is(err, tc.want) {
				t.Fatalf("New = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestNamedObjectMustExist: the object a host names is read from the API,
// as Conjur does, and a login is refused when it is gone, or was deleted
// and created again under the same name (its uid differs from what the
// token or the owner chain references), even though the pod still runs.
func TestNamedObjectMustExist(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	tests := map[string]struct {
		pod    jwttest.Pod
		host   string
		detail string
	}{
		"service account deleted":              {batchPod, apps + "shop/service_account/batch", "service account shop/batch does not exist"},
		"service account replaced":             {rotatedPod, apps + "shop/service_account/rotated", "service account was replaced"},
		"deployment config deleted":            {orphanPod, apps + "ops/deployment_config/orphan", "deployment config ops/orphan does not exist"},
		"deployment config deleted, annotated": {orphanPod, "host/annotated/orphan", "deployment config ops/orphan does not exist"},
		"deployment deleted":                   {goneDPod, apps + "shop/deployment/gone", "deployment shop/gone does not exist"},
		"deployment replaced":                  {oldWebPod, apps + "shop/deployment/web", "the host names shop/web"},
		"stateful set never existed":           {webPod, apps + "shop/stateful_set/web", "stateful set shop/web does not exist"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, tc.pod, nil), Host: tc.host})
			if !authn.IsReason(err, authn.ReasonWorkloadMismatch) {
				t.Fatalf("Authenticate = %v (%s), want workload_mismatch", err, reasonOf(err))
			}
			if _, d := authn.ReasonOf(err); !strings.Contains(d, tc.detail) {
				t.Fatalf("detail %q does not say %q", d, tc.detail)
			}
		})
	}
	// The same pods authenticate as hosts that do not name the missing
	// object: the namespace form reads only the pod, as Conjur does.
	for _, p := range []jwttest.Pod{batchPod, goneDPod} {
		if _, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, p, nil), Host: apps + "shop/*/*"}); err != nil {
			t.Fatalf("%s as shop/*/*: %v (%s)", p.Name, err, reasonOf(err))
		}
	}
}

// TestHostIDsAnywhereInPolicy: the last three parts of a host id are its
// namespace, resource and name wherever the host is declared; a host
// permitted authenticate on the webservice logs in, one that is not is
// refused with not_permitted, and an id too short to hold the three parts
// is invalid.
func TestHostIDsAnywhereInPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	tests := map[string]struct {
		pod    jwttest.Pod
		host   string
		reason authn.Reason // "" for success
	}{
		"under root":                        {pod: webPod, host: "host/shop/*/*"},
		"under another policy":              {pod: webPod, host: "host/team-a/shop/deployment/web"},
		"deployment config, other policy":   {pod: legacyPod, host: "team-a/ops/deployment_config/legacy"},
		"stateful set under root":           {pod: dbPod, host: "host/shop/stateful_set/db"},
		"without authenticate":              {pod: webPod, host: "host/team-b/shop/*/*", reason: authn.ReasonNotPermitted},
		"other pod, other policy":           {pod: dbPod, host: "host/team-a/shop/deployment/web", reason: authn.ReasonWorkloadMismatch},
		"one part":                          {pod: webPod, host: "host/web", reason: authn.ReasonInvalidHostID},
		"two parts":                         {pod: webPod, host: "host/team-a/web", reason: authn.ReasonInvalidHostID},
		"not a namespace before the kind":   {pod: webPod, host: apps + "shop/*/*/extra", reason: authn.ReasonInvalidHostID},
		"last three parts name no resource": {pod: webPod, host: apps + "shop/replica_set/web-7d9c8b", reason: authn.ReasonInvalidHostID},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, tc.pod, nil), Host: tc.host})
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Authenticate = %v (%s)", err, reasonOf(err))
				}
				if want := "host/" + strings.TrimPrefix(tc.host, "host/"); res.HostID != want {
					t.Fatalf("HostID = %q, want %q", res.HostID, want)
				}
				return
			}
			if !authn.IsReason(err, tc.reason) {
				t.Fatalf("Authenticate = %v (%s), want %s", err, reasonOf(err), tc.reason)
			}
		})
	}
}

// TestWhatIsAskedOfTheAPI pins, per host form, the GETs the authenticator
// makes (the list docs/authn.md gives for RBAC): only get, only on the
// objects on the way from the pod to the object the host names.
func TestWhatIsAskedOfTheAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, jwt.Settings{}, true)
	const core, apps1, oc = "GET /api/v1/namespaces/", "GET /apis/apps/v1/namespaces/", "GET /apis/apps.openshift.io/v1/namespaces/"
	tests := []struct {
		pod  jwttest.Pod
		host string
		want []string
	}{
		{webPod, apps + "shop/*/*", []string{core + "shop/pods/web-7d9c8b-x2x4z"}},
		{webPod, apps + "shop/pod/web-7d9c8b-x2x4z", []string{core + "shop/pods/web-7d9c8b-x2x4z"}},
		{webPod, apps + "shop/service_account/web", []string{core + "shop/pods/web-7d9c8b-x2x4z", core + "shop/serviceaccounts/web"}},
		{webPod, apps + "shop/deployment/web", []string{core + "shop/pods/web-7d9c8b-x2x4z", apps1 + "shop/deployments/web", apps1 + "shop/replicasets/web-7d9c8b"}},
		{dbPod, apps + "shop/stateful_set/db", []string{core + "shop/pods/db-0", apps1 + "shop/statefulsets/db"}},
		{legacyPod, apps + "ops/deployment_config/legacy", []string{core + "ops/pods/legacy-3-k2v9p", oc + "ops/deploymentconfigs/legacy", core + "ops/replicationcontrollers/legacy-3"}},
		// Annotations: each named object in the table's order.
		{webPod, "host/annotated/web", []string{core + "shop/pods/web-7d9c8b-x2x4z", apps1 + "shop/deployments/web", apps1 + "shop/replicasets/web-7d9c8b", core + "shop/serviceaccounts/web"}},
		// A namespace mismatch is refused before the API is asked.
		{webPod, apps + "other/*/*", nil},
	}
	// One at a time: the fake's request log is shared.
	for _, tc := range tests {
		f.kube.asked()
		_, _ = f.auth.Authenticate(context.Background(), k8s.Request{Token: f.token(t, tc.pod, nil), Host: tc.host})
		if got := f.kube.asked(); !slices.Equal(got, tc.want) {
			t.Errorf("%s asked\n  %q\nwant\n  %q", tc.host, got, tc.want)
		}
	}
}
