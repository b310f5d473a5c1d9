// Package helm_test renders the sower-follower chart with Helm's own Go SDK
// (package helm: no helm binary), decodes every rendered object strictly
// into the Kubernetes API types (an unknown or duplicate field fails, as the
// API server's strict field validation would), checks what the chart promises
// (security context, probes, selectors, Conjur's environment names), and
// checks that values.schema.json refuses bad values naming the key.
package helm_test

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sowerproject/sower/deploy/helm"
)

// testPin is a well-formed CA pin (not any real cluster's).
const testPin = "sha256:9a1f00112233445566778899aabbccddeeff00112233445566778899aabbccdd"

// required are the values a user must give: without them the schema refuses.
func required() map[string]any {
	return map[string]any{
		"account":          "acme",
		"fullnameOverride": "conjur-follower",
		"leader":           map[string]any{"url": "https://leader.example.internal:8443", "caPin": testPin},
	}
}

// render renders the chart into the namespace conjur-followers as `helm
// install` does (helm.Render: values coalesced and validated by the schema).
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	return helm.Render(vals)
}

type object = helm.Object

// renderObjects renders and strictly decodes every manifest.
func renderObjects(t *testing.T, vals map[string]any) []object {
	t.Helper()
	objs, err := helm.RenderObjects(vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return objs
}

func find[T any](t *testing.T, objs []object) T {
	t.Helper()
	var zero T
	v, ok := helm.Find[T](objs)
	if !ok {
		t.Fatalf("no %T rendered", zero)
	}
	return v
}

func kindsOf(objs []object) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Kind)
	}
	slices.Sort(ks)
	return ks
}

func merge(base map[string]any, path string, v any) map[string]any {
	keys := strings.Split(path, ".")
	m := base
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
	return base
}

// TestRenderedObjectsDecodeStrictly: the defaults render the Follower's
// objects, each a valid object of its API type, labelled from one helper;
// options add (HPA, CA ConfigMap) or remove (RBAC, PDB, NetworkPolicy) exactly their objects.
func TestRenderedObjectsDecodeStrictly(t *testing.T) {
	cases := map[string]struct {
		set  map[string]any
		want []string
	}{
		"defaults": {want: []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"}},
		"autoscaling and a CA bundle": {
			set:  map[string]any{"autoscaling.enabled": true, "leader.caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
			want: []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"},
		},
		"minimal": {
			set:  map[string]any{"rbac.create": false, "podDisruptionBudget.enabled": false, "networkPolicy.enabled": false, "serviceAccount.create": false},
			want: []string{"Deployment", "Service"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			vals := required()
			for k, v := range tc.set {
				merge(vals, k, v)
			}
			objs := renderObjects(t, vals)
			if got := kindsOf(objs); !slices.Equal(got, tc.want) {
				t.Fatalf("rendered kinds %v, want %v", got, tc.want)
			}
			for _, o := range objs {
				if errs := validation.IsDNS1123Subdomain(o.Meta.Name); len(errs) > 0 {
					t.Errorf("%s %q: %v", o.Kind, o.Meta.Name, errs)
				}
				for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
					if o.Meta.Labels[l] == "" {
						t.Errorf("%s %q lacks label %s", o.Kind, o.Meta.Name, l)
					}
				}
				for k, v := range o.Meta.Labels {
					if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
						t.Errorf("%s %q label %s=%q: %v", o.Kind, o.Meta.Name, k, v, errs)
					}
				}
			}
			d := find[*appsv1.Deployment](t, objs)
			if _, hpa := tc.set["autoscaling.enabled"]; hpa != (d.Spec.Replicas == nil) {
				t.Errorf("replicas %v with autoscaling %v: the HPA must own the count alone", d.Spec.Replicas, hpa)
			}
		})
	}
}

// TestFollowerPod: the pod spec holds what the chart promises.
func TestFollowerPod(t *testing.T) {
	objs := renderObjects(t, required())
	d := find[*appsv1.Deployment](t, objs)
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector, pod.Labels)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("replicas %d, maxUnavailable %v", *d.Spec.Replicas, d.Spec.Strategy.RollingUpdate.MaxUnavailable)
	}
	svc := find[*corev1.Service](t, objs)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || svc.Name != "conjur-follower" ||
		svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("Service %s: selector %v, ports %+v", svc.Name, svc.Spec.Selector, svc.Spec.Ports)
	}
	pdb := find[*policyv1.PodDisruptionBudget](t, objs)
	if s, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); !s.Matches(podLabels) || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB selector %v, maxUnavailable %v", pdb.Spec.Selector, pdb.Spec.MaxUnavailable)
	}
	np := find[*networkingv1.NetworkPolicy](t, objs)
	if s, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); !s.Matches(podLabels) || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("NetworkPolicy selector %v, types %v", np.Spec.PodSelector, np.Spec.PolicyTypes)
	}

	// Security: non-root, RuntimeDefault seccomp, and per container a
	// read-only root, no escalation, no capabilities.
	ps := pod.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || *ps.RunAsUser != 65532 ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", ps)
	}
	all := append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...)
	if len(all) != 2 {
		t.Fatalf("containers: %d, want the seed fetcher and the Follower", len(all))
	}
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || *sc.Privileged ||
			!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s securityContext %+v", c.Name, sc)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if c.Resources.Requests.Name(r, "").IsZero() || c.Resources.Limits.Name(r, "").IsZero() {
				t.Errorf("container %s: no %s request or limit", c.Name, r)
			}
		}
	}

	// The seed fetcher: Conjur's environment names.
	fetcher := pod.Spec.InitContainers[0]
	env := map[string]string{}
	for _, e := range fetcher.Env {
		env[e.Name] = e.Value
	}
	want := map[string]string{
		"CONJUR_SEED_FILE_URL": "https://leader.example.internal:8443/configuration/acme/seed/follower",
		"CONJUR_ACCOUNT":       "acme",
		"CONJUR_AUTHN_URL":     "https://leader.example.internal:8443/authn-jwt/production-cluster",
		"AUTHENTICATOR_ID":     "production-cluster",
		"SOWER_CA_PIN":         testPin,
		"FOLLOWER_HOSTNAME":    "conjur-follower.conjur-followers.svc.cluster.local,conjur-follower.conjur-followers.svc",
		"SEEDFILE_DIR":         "/run/sower/seed",
		"JWT_TOKEN_PATH":       "/var/run/secrets/sower/token",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("seed fetcher %s=%q, want %q", k, env[k], v)
		}
	}
	if fetcher.Command[0] != "/usr/local/bin/sower-seed-fetcher" || !strings.HasPrefix(fetcher.Image, "localhost/sower-seed-fetcher:") {
		t.Errorf("seed fetcher image %s command %v", fetcher.Image, fetcher.Command)
	}

	// The Follower: `sower follower` over the seed, probes on its health endpoints.
	f := pod.Spec.Containers[0]
	if f.Args[0] != "follower" || !slices.Contains(f.Args, "--seed-dir=/run/sower/seed/follower") || !slices.Contains(f.Args, "--data-dir=/var/lib/sower") ||
		!slices.Contains(f.Args, "--http-addr=0.0.0.0:8443") || !slices.Contains(f.Args, "--log-format=json") {
		t.Errorf("Follower args %v", f.Args)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": f.ReadinessProbe, "liveness": f.LivenessProbe, "startup": f.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.StrVal != "http" {
			t.Errorf("%s probe %+v", name, p)
		}
	}
	if f.ReadinessProbe.HTTPGet.Path != "/readyz" || f.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probe paths %s %s", f.ReadinessProbe.HTTPGet.Path, f.LivenessProbe.HTTPGet.Path)
	}

	// Volumes: the seed in memory, mounted read-only in the Follower; the
	// projected token carries the authenticator's audience.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["seed"]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("seed volume %+v", v)
	}
	tok := vols["sa-token"]
	if tok.Projected == nil || tok.Projected.Sources[0].ServiceAccountToken == nil ||
		tok.Projected.Sources[0].ServiceAccountToken.Audience != "sower" || tok.Projected.Sources[0].ServiceAccountToken.Path != "token" {
		t.Errorf("token volume %+v", tok)
	}
	for _, m := range f.VolumeMounts {
		if m.Name == "seed" && !m.ReadOnly {
			t.Error("the Follower can write its seed")
		}
		if m.Name == "sa-token" {
			t.Error("the Follower mounts the seed fetcher's token")
		}
	}
	if pod.Spec.ServiceAccountName != "conjur-follower" {
		t.Errorf("service account %q", pod.Spec.ServiceAccountName)
	}
}

// TestSchemaRefusesBadValues: a bad values file fails as `helm install`
// would, with a message naming the key.
func TestSchemaRefusesBadValues(t *testing.T) {
	cases := map[string]struct {
		set     map[string]any
		drop    string
		wantKey string
	}{
		"missing CA pin":            {drop: "caPin", wantKey: "/leader/caPin"},
		"CA pin not sha256":         {set: map[string]any{"leader.caPin": "md5:abcd"}, wantKey: "/leader/caPin"},
		"account not a string":      {set: map[string]any{"account": 123}, wantKey: "/account"},
		"empty account":             {set: map[string]any{"account": ""}, wantKey: "/account"},
		"negative replicas":         {set: map[string]any{"follower.replicas": -1}, wantKey: "/follower/replicas"},
		"replicas not a number":     {set: map[string]any{"follower.replicas": "two"}, wantKey: "/follower/replicas"},
		"leader over http":          {set: map[string]any{"leader.url": "http://leader:8443"}, wantKey: "/leader/url"},
		"unknown authenticator":     {set: map[string]any{"authenticator.type": "authn-ldap"}, wantKey: "/authenticator/type"},
		"misspelt key":              {set: map[string]any{"follower.replica": 3}, wantKey: "replica"},
		"port out of range":         {set: map[string]any{"follower.httpPort": 70000}, wantKey: "/follower/httpPort"},
		"root allowed":              {set: map[string]any{"podSecurityContext.runAsNonRoot": false}, wantKey: "/podSecurityContext/runAsNonRoot"},
		"privilege escalation":      {set: map[string]any{"securityContext.allowPrivilegeEscalation": true}, wantKey: "/securityContext/allowPrivilegeEscalation"},
		"token shorter than 10 min": {set: map[string]any{"authenticator.tokenExpirationSeconds": 60}, wantKey: "/authenticator/tokenExpirationSeconds"},
		"bad fetch deadline":        {set: map[string]any{"follower.seedFetchDeadline": "five minutes"}, wantKey: "/follower/seedFetchDeadline"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			vals := required()
			if tc.drop != "" {
				delete(vals["leader"].(map[string]any), tc.drop)
			}
			for k, v := range tc.set {
				merge(vals, k, v)
			}
			_, err := render(t, vals)
			if err == nil {
				t.Fatal("the schema accepted the bad value")
			}
			if !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("the refusal does not name %s:\n%v", tc.wantKey, err)
			}
		})
	}
	// And the good values pass: the refusals above are the schema's, not the test's.
	if _, err := render(t, required()); err != nil {
		t.Fatalf("good values refused: %v", err)
	}
}

// TestChartDocumentsEveryValue: every key of values.yaml is typed in the
// schema (the schema refuses unknown keys, so an untyped default would
// break every install) and documented by a comment.
func TestChartDocumentsEveryValue(t *testing.T) {
	ch, err := loader.Load(helm.ChartDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := chartutil.ValidateAgainstSchema(ch, merge(maps.Clone(ch.Values), "account", "acme")); err == nil {
		t.Fatal("the defaults alone pass the schema, but the Leader's URL and CA pin are required")
	} else if strings.Contains(err.Error(), "additional properties") {
		t.Fatalf("values.yaml holds a key the schema does not type: %v", err)
	}
	var raw []byte
	for _, f := range ch.Raw {
		if f.Name == "values.yaml" {
			raw = f.Data
		}
	}
	if bytes.Count(raw, []byte("# ")) < 30 {
		t.Errorf("values.yaml has %d comment lines; document every value", bytes.Count(raw, []byte("# ")))
	}
}

// TestWorkloadExample: the documented application pod decodes strictly,
// shares an in-memory volume at Conjur's path between sower-authn-client
// (init container and sidecar) and the application, and gives the client a
// projected token with the authenticator's audience.
func TestWorkloadExample(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "examples", "app-with-authn-client.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := helm.DecodeStrict("app-with-authn-client.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := kindsOf(objs); !slices.Equal(got, []string{"Deployment", "ServiceAccount"}) {
		t.Fatalf("kinds %v", got)
	}
	pod := find[*appsv1.Deployment](t, objs).Spec.Template.Spec
	var clients int
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		var mountsToken bool
		for _, m := range c.VolumeMounts {
			if m.Name == "conjur-access-token" && m.MountPath == "/run/conjur" {
				mountsToken = true
			}
		}
		if !mountsToken {
			t.Errorf("container %s does not mount the access-token volume at /run/conjur", c.Name)
		}
		if strings.Contains(c.Image, "sower-authn-client") {
			clients++
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if env["CONJUR_AUTHN_TOKEN_FILE"] != "/run/conjur/access-token" || env["JWT_TOKEN_PATH"] == "" || env["SOWER_CA_PIN"] == "" ||
				!strings.HasSuffix(env["CONJUR_AUTHN_URL"], "/authn-jwt/production-cluster") {
				t.Errorf("authn client %s env %v", c.Name, env)
			}
		}
	}
	if clients != 2 || len(pod.InitContainers) != 1 {
		t.Errorf("%d authn clients, %d init containers: want an init container and a sidecar", clients, len(pod.InitContainers))
	}
	for _, v := range pod.Volumes {
		if v.Name == "conjur-access-token" && (v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory) {
			t.Errorf("the access token volume is not in memory: %+v", v)
		}
		if v.Name == "sa-token" && v.Projected.Sources[0].ServiceAccountToken.Audience != "sower" {
			t.Errorf("token audience %q", v.Projected.Sources[0].ServiceAccountToken.Audience)
		}
	}
}
