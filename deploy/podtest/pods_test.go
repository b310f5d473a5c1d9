package podtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sowerproject/sower/deploy/helm"
	"github.com/sowerproject/sower/internal/testutil"
)

const (
	account = "acme"
	// The chart's Service name, which the Followers' certificates carry
	// (FOLLOWER_HOSTNAME) and the application calls.
	serviceName = helm.Release + "." + helm.Namespace + ".svc.cluster.local"
	// The authenticator of the chart's policy and the audience the chart
	// gives the projected tokens.
	authnPolicy  = "conjur/authn-k8s/production-cluster"
	audience     = "sower"
	kubeIssuer   = "https://kubernetes.default.svc.cluster.local"
	shopSecretID = "shop/database/password"
	// nonRoot is the user the images and the chart run as.
	nonRoot = 65532
)

// leader is a Leader process of the freshly built static binary (the one
// in the server image), on 127.0.0.1.
type leader struct {
	t       testing.TB
	bin     string
	dir     string
	url     string
	grpc    string
	client  *http.Client
	token   string // the admin's access token, as an Authorization value
	caPEM   []byte
	pin     string
	logPath string
}

// startLeader runs `sower server` from bin/static (built by `make image`)
// until the test ends, and waits until it answers /readyz.
func startLeader(t testing.TB) *leader {
	t.Helper()
	root := repoRoot(t)
	l := &leader{t: t, bin: filepath.Join(root, "bin", "static", "sower"), dir: t.TempDir()}
	a := testutil.FreeAddrs(t, 4)
	l.url, l.grpc = "https://"+a[1], a[0]
	l.logPath = filepath.Join(l.dir, "leader.log")
	logf, err := os.Create(l.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(l.bin, "server", "--name", "leader-1", "--account", account,
		"--data-dir", filepath.Join(l.dir, "data"), "--grpc-addr", a[0], "--http-addr", a[1],
		"--etcd-client-addr", a[2], "--etcd-peer-addr", a[3], "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the Leader's log (end):\n%s", l.log())
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	data := filepath.Join(l.dir, "data")
	poll(t, 2*time.Minute, "the Leader's /readyz", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("the Leader exited:\n%s", l.log())
		default:
		}
		if _, err := os.Stat(testutil.CAFile(data)); err != nil {
			return false, err.Error()
		}
		if l.client == nil {
			l.client = testutil.HTTPClient(t, data)
		}
		resp, err := l.client.Get(l.url + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if l.caPEM, err = os.ReadFile(testutil.CAFile(data)); err != nil {
		t.Fatal(err)
	}
	pin, err := exec.Command(l.bin, "ca", "pin", "--ca-file", testutil.CAFile(data)).Output()
	if err != nil {
		t.Fatalf("sower ca pin: %v", err)
	}
	l.pin = strings.TrimSpace(string(pin))
	key, err := os.ReadFile(filepath.Join(data, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := l.do(http.MethodPost, "/authn/"+account+"/admin/authenticate", "", bytes.TrimSpace(key), "Accept-Encoding", "base64")
	if code != http.StatusOK {
		t.Fatalf("admin login: %d %s", code, body)
	}
	l.token = `Token token="` + body + `"`
	return l
}

func (l *leader) log() string {
	b, _ := os.ReadFile(l.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// sower runs the CLI against the Leader as its admin.
func (l *leader) sower(args ...string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, args...)
	data := filepath.Join(l.dir, "data")
	cmd.Env = append(os.Environ(), "SOWER_SERVER="+l.url, "SOWER_CA_FILE="+testutil.CAFile(data),
		"SOWER_API_KEY_FILE="+filepath.Join(data, "admin.key"), "SOWER_ACCOUNT="+account)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("sower %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do sends a request to the Leader; hdr are name, value pairs.
func (l *leader) do(method, path, token string, body []byte, hdr ...string) (int, http.Header, string) {
	l.t.Helper()
	req, _ := http.NewRequest(method, l.url+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := l.client.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// setSecret sets a variable on the Leader and returns the revision of the
// write (X-Sower-Revision).
func (l *leader) setSecret(id, value string) int64 {
	l.t.Helper()
	code, hdr, body := l.do(http.MethodPost, secretPath(id), l.token, []byte(value))
	if code != http.StatusCreated {
		l.t.Fatalf("set %s: %d %s", id, code, body)
	}
	rev, err := strconv.ParseInt(hdr.Get("X-Sower-Revision"), 10, 64)
	if err != nil {
		l.t.Fatalf("set %s: X-Sower-Revision %q", id, hdr.Get("X-Sower-Revision"))
	}
	return rev
}

func secretPath(id string) string {
	return "/secrets/" + account + "/variable/" + strings.ReplaceAll(url.PathEscape(id), "/", "%2F")
}

// attached is one entry of `sower cluster followers -o json`.
type attached struct {
	Name   string `json:"name"`
	Serial string `json:"serial"`
	Node   string `json:"node"`
}

func (l *leader) followers() []attached {
	l.t.Helper()
	var resp struct {
		Followers []attached `json:"followers"`
	}
	out := l.sower("cluster", "followers", "-o", "json")
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		l.t.Fatalf("sower cluster followers -o json: %v\n%s", err, out)
	}
	return resp.Followers
}

// seedRecord is one entry of GET /v1/seeds.
type seedRecord struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Serials []string `json:"serials"`
}

// seedRecords are the Leader's seed records (`sower seed list`), by id.
func (l *leader) seedRecords() map[string]seedRecord {
	l.t.Helper()
	code, _, body := l.do(http.MethodGet, "/v1/seeds", l.token, nil)
	var resp struct {
		Seeds []seedRecord `json:"seeds"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &resp) != nil {
		l.t.Fatalf("GET /v1/seeds: %d %s", code, body)
	}
	out := map[string]seedRecord{}
	for _, r := range resp.Seeds {
		out[r.ID] = r
	}
	return out
}

// sameSerial compares hex serials however they are written.
func sameSerial(a, b string) bool {
	x, ok1 := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(a), "0x"), 16)
	y, ok2 := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(b), "0x"), 16)
	return ok1 && ok2 && x.Cmp(y) == 0
}

// issuer is the test's Kubernetes service-account token issuer: an RSA key
// whose JWKS the Leader's authenticator holds as `public-keys`.
type issuer struct {
	key *rsa.PrivateKey
	kid string
}

func newIssuer(t testing.TB) *issuer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{key: k, kid: "podtest-1"}
}

// publicKeys is the authenticator's public-keys value.
func (is *issuer) publicKeys() string {
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: string(jose.RS256), Use: "sig"}}})
	return `{"type":"jwks","value":` + string(set) + `}`
}

// token mints a projected service-account token in Kubernetes' shape for
// a pod of namespace ns running as service account sa.
func (is *issuer) token(t testing.TB, ns, sa, pod string) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"aud": []string{audience}, "iss": kubeIssuer, "sub": "system:serviceaccount:" + ns + ":" + sa,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": rand.Text(),
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"node":           map[string]any{"name": "podman", "uid": uid()},
			"pod":            map[string]any{"name": pod, "uid": uid()},
			"serviceaccount": map[string]any{"name": sa, "uid": uid()},
		},
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", is.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func uid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// cluster is a Leader set up as docs/kubernetes.md sets one up: a policy
// with the chart's authenticator loaded, the authenticator's variables set.
type cluster struct {
	*leader
	issuer *issuer
	// hostnames are the Followers' DNS names (the chart's
	// follower.hostnames; nil: the chart's default, the Service's names).
	hostnames []string
	// dir holds the minted tokens and the application program, mounted
	// into the pods by hostPath: readable by the pods' user.
	dir string
}

func newCluster(t testing.TB, loadPolicy func(*leader)) *cluster {
	t.Helper()
	l := startLeader(t)
	loadPolicy(l)
	c := &cluster{leader: l, issuer: newIssuer(t)}
	for id, v := range map[string]string{
		authnPolicy + "/public-keys":        c.issuer.publicKeys(),
		authnPolicy + "/issuer":             kubeIssuer,
		authnPolicy + "/audience":           audience,
		authnPolicy + "/token-app-property": "sub",
		authnPolicy + "/identity-path":      authnPolicy + "/apps",
	} {
		l.setSecret(id, v)
	}
	dir, err := os.MkdirTemp("", "sower-podtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	return c
}

// chartPolicy syncs the chart's policy repository, as docs/kubernetes.md
// does.
func chartPolicy(l *leader) {
	l.sower("policy", "sync", filepath.Join(helm.ChartDir(), "policy"))
}

// tokenDir writes a minted token for a pod into its own folder (what the
// projected volume would hold) and returns the folder.
func (c *cluster) tokenDir(t testing.TB, ns, sa, pod string) string {
	t.Helper()
	d := filepath.Join(c.dir, pod+"-token")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(d, "token")
	if err := os.WriteFile(f, []byte(c.issuer.token(t, ns, sa, pod)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The pod's user reads it, as the kubelet makes the projected token
	// readable by the pod's fsGroup.
	if err := os.Chown(f, nonRoot, nonRoot); err != nil {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// followerPod renders the chart with the test's Leader, pin and images and
// turns its Deployment's pod template into the Pod `podman kube play` runs,
// changing only what podman cannot do (see the comments).
func (c *cluster) followerPod(t testing.TB, name string, httpPort, grpcPort int) *corev1.Pod {
	t.Helper()
	follower := map[string]any{
		"replicas": 1, "httpPort": httpPort, "grpcPort": grpcPort,
		"listenAddress": "127.0.0.1", "seedFetchDeadline": "2m",
	}
	if c.hostnames != nil {
		hs := make([]any, len(c.hostnames))
		for i, h := range c.hostnames {
			hs[i] = h
		}
		follower["hostnames"] = hs
	}
	objs, err := helm.RenderObjects(map[string]any{
		"account":          account,
		"fullnameOverride": helm.Release,
		"leader":           map[string]any{"url": c.url, "caPin": c.pin},
		"image":            map[string]any{"tag": tag},
		// Two Followers share the host's network: each its own ports.
		"hostNetwork": true,
		"follower":    follower,
	})
	if err != nil {
		t.Fatalf("render the chart: %v", err)
	}
	d, ok := helm.Find[*appsv1.Deployment](objs)
	if !ok {
		t.Fatal("the chart rendered no Deployment")
	}
	pod := podOf(name, d)
	spec := &pod.Spec
	// No API server projects a service-account token here: the token
	// volume is a hostPath holding the token the test minted.
	replaceTokenVolume(t, spec, c.tokenDir(t, helm.Namespace, "conjur-follower", name))
	// podman runs an httpGet probe as a `curl` inside the container, and the
	// scratch image has no curl: the probes are dropped, and the test polls
	// /readyz itself, as the readiness probe would.
	for i := range spec.Containers {
		spec.Containers[i].StartupProbe, spec.Containers[i].ReadinessProbe, spec.Containers[i].LivenessProbe = nil, nil, nil
		// podman 4.3 turns containerPort into a port mapping, which it
		// refuses on the host's network ("PortMappings can only be used
		// with Bridge"); on hostNetwork the ports only document the
		// listening ports, which the args set.
		spec.Containers[i].Ports = nil
	}
	return pod
}

// appPod is deploy/examples/app-with-authn-client.yaml's application pod,
// pointed at the Follower on followerPort: its authn client (init container
// and sidecar, unchanged but for images, pin and URL) logs in with the
// shop's minted token; the application container runs appreader, which
// reads the shop's secret with the token the client wrote.
func (c *cluster) appPod(t testing.TB, name string, followerPort int, reader string) *corev1.Pod {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "examples", "app-with-authn-client.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := helm.DecodeStrict("app-with-authn-client.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := helm.Find[*appsv1.Deployment](objs)
	if !ok {
		t.Fatal("the example has no Deployment")
	}
	pod := podOf(name, d)
	spec := &pod.Spec
	// The Service's port 443 → the Follower's port: no Service here, the
	// name resolves to 127.0.0.1 and the URL names the port. podman 4.3
	// keeps hostAliases out of the containers' /etc/hosts in a pod on the
	// host's network: the test mounts one with the line hostAliases would
	// add.
	base := "https://" + serviceName
	withPort := base + ":" + strconv.Itoa(followerPort)
	spec.HostNetwork = true
	hosts := filepath.Join(c.dir, name+"-hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1\tlocalhost\n127.0.0.1\t"+serviceName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fileType := corev1.HostPathFile
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name + "-hosts", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: hosts, Type: &fileType}}})
	replaceTokenVolume(t, spec, c.tokenDir(t, "shop", "shop", name))
	for _, cs := range []*[]corev1.Container{&spec.InitContainers, &spec.Containers} {
		for i := range *cs {
			ct := &(*cs)[i]
			ct.Image = strings.Replace(ct.Image, ":dev", ":"+tag, 1)
			ct.VolumeMounts = append(ct.VolumeMounts, corev1.VolumeMount{Name: name + "-hosts", MountPath: "/etc/hosts", ReadOnly: true})
			for j := range ct.Env {
				e := &ct.Env[j]
				switch e.Name {
				case "SOWER_CA_PIN":
					e.Value = c.pin
				case "CONJUR_AUTHN_URL", "CONJUR_APPLIANCE_URL":
					e.Value = strings.Replace(e.Value, base, withPort, 1)
				}
			}
			if ct.Name != "app" {
				continue
			}
			// The application: appreader from a hostPath, in the authn
			// client's image (any scratch image would do).
			ct.Image = image("sower-authn-client")
			ct.Command = []string{"/podtest/appreader"}
			ct.Env = append(ct.Env,
				corev1.EnvVar{Name: "CONJUR_SSL_CERTIFICATE", Value: string(c.caPEM)},
				corev1.EnvVar{Name: "SECRET_ID", Value: shopSecretID})
			ct.VolumeMounts = append(ct.VolumeMounts, corev1.VolumeMount{Name: name + "-appreader", MountPath: "/podtest", ReadOnly: true})
		}
	}
	dirType := corev1.HostPathDirectory
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name + "-appreader", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: filepath.Dir(reader), Type: &dirType}}})
	return pod
}

// podOf is the pod a Deployment's controller would create, named name.
// podman 4.3 resolves no fieldRef but metadata.name: the pod's namespace is
// written in, as the kubelet would resolve it.
func podOf(name string, d *appsv1.Deployment) *corev1.Pod {
	tpl := d.Spec.Template
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: tpl.Labels, Annotations: tpl.Annotations},
		Spec:       *tpl.Spec.DeepCopy(),
	}
	// podman removes an init container once it has run ("once"), and
	// podman 4.3 may try while it still runs; Kubernetes keeps it, with
	// its log: "always" does too.
	pod.Annotations = maps.Clone(pod.Annotations)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations["io.podman.annotations.init.container.type"] = "always"
	// ... and podman applies the pod's restart policy to init containers
	// too: under Always it runs a finished seed fetcher again and again
	// (a new seed each time). OnFailure restarts what fails, as Kubernetes
	// does for init containers.
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	// podman 4.3 makes an emptyDir a named volume called by the volume's
	// name, so two pods naming "seed" would share one; Kubernetes gives
	// each pod its own. The pod's name goes in front.
	for i := range pod.Spec.Volumes {
		pod.Spec.Volumes[i].Name = name + "-" + pod.Spec.Volumes[i].Name
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			for j, e := range cs[i].Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
					cs[i].Env[j] = corev1.EnvVar{Name: e.Name, Value: pod.Namespace}
				}
			}
			for j := range cs[i].VolumeMounts {
				cs[i].VolumeMounts[j].Name = name + "-" + cs[i].VolumeMounts[j].Name
			}
		}
	}
	return pod
}

// replaceTokenVolume turns the projected token volume "sa-token" into a
// hostPath of dir.
func replaceTokenVolume(t testing.TB, spec *corev1.PodSpec, dir string) {
	t.Helper()
	dirType := corev1.HostPathDirectory
	for i, v := range spec.Volumes {
		if strings.HasSuffix(v.Name, "-sa-token") {
			if v.Projected == nil || v.Projected.Sources[0].ServiceAccountToken == nil || v.Projected.Sources[0].ServiceAccountToken.Audience != audience {
				t.Fatalf("volume sa-token is not a projected token for audience %q: %+v", audience, v)
			}
			spec.Volumes[i].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType}}
			return
		}
	}
	t.Fatal("the pod has no sa-token volume")
}

// play writes pod as YAML and runs `podman kube play` on it. The pod is
// removed by name by the returned function, and when the test ends
// whatever happened.
func play(t testing.TB, dir string, pod *corev1.Pod) (down func()) {
	t.Helper()
	y, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, pod.Name+".yaml")
	if err := os.WriteFile(file, y, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _ = podmanOut("pod", "rm", "--force", pod.Name)
	var once sync.Once
	down = func() {
		once.Do(func() {
			if out, err := podmanOut("kube", "down", file); err != nil {
				t.Logf("podman kube down %s: %v: %s", pod.Name, err, out)
			}
			_, _ = podmanOut("pod", "rm", "--force", "--time", "5", pod.Name)
			for _, v := range pod.Spec.Volumes {
				if v.EmptyDir != nil {
					_, _ = podmanOut("volume", "rm", "--force", v.Name)
				}
			}
		})
	}
	t.Cleanup(down)
	if out, err := podmanOut("kube", "play", file); err != nil {
		t.Fatalf("podman kube play %s: %v\n%s\n%s", pod.Name, err, out, y)
	}
	return down
}

// podmanOut runs podman and returns its combined output.
func podmanOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "podman", args...).CombinedOutput()
	return string(out), err
}

// logs is a container's log, for failure messages and the init
// container's record.
func logs(ctr string) string {
	out, err := podmanOut("logs", ctr)
	if err != nil {
		return fmt.Sprintf("(podman logs %s: %v: %s)", ctr, err, out)
	}
	return out
}

// followerClient talks to a Follower on 127.0.0.1 as the application
// would: the cluster CA, the Service's name.
func (c *cluster) followerClient(t testing.TB) *http.Client {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.caPEM) {
		t.Fatal("the Leader's CA file holds no certificate")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serviceName, MinVersion: tls.VersionTLS12}}}
}

// waitReady polls the Follower's /readyz (what the chart's readiness probe
// asks) until it answers 200, and returns the serving certificate's serial.
func waitReady(t testing.TB, hc *http.Client, pod string, port int, deadline time.Duration) string {
	t.Helper()
	var serial string
	poll(t, deadline, pod+"'s /readyz", func() (bool, string) {
		resp, err := hc.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
			serial = resp.TLS.PeerCertificates[0].SerialNumber.Text(16)
		}
		return resp.StatusCode == http.StatusOK, resp.Status
	}, func() string {
		return "seed-fetcher: " + logs(pod+"-seed-fetcher") + "\nfollower: " + logs(pod+"-follower")
	})
	return serial
}

// poll calls cond until it reports true or the deadline passes; then it
// fails with cond's last word and what the details functions say.
func poll(t testing.TB, deadline time.Duration, what string, cond func() (bool, string), details ...func() string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			for _, d := range details {
				last += "\n" + d()
			}
			t.Fatalf("%s: not within %s: %s", what, deadline, last)
		}
		time.Sleep(250 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// buildReader builds appreader statically into dir/appreader/, readable
// and executable by the pods' user.
func buildReader(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "appreader", "appreader")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./appreader")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build appreader: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// freePorts returns n ports free on 127.0.0.1 a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for _, a := range testutil.FreeAddrs(t, n) {
		_, p, _ := strings.Cut(a, "127.0.0.1:")
		port, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("port of %s: %v", a, err)
		}
		ports = append(ports, port)
	}
	return ports
}

// seedUnpacked finds the seed fetcher's "seed unpacked" line (JSON) in
// its log and returns the seed id.
func seedUnpacked(log string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var l struct {
			Msg    string `json:"msg"`
			SeedID string `json:"seed_id"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "seed unpacked" && l.SeedID != "" {
			return l.SeedID
		}
	}
	return ""
}

// TestFollowerPods is issue 14's pod test. A Leader process (the static
// binary the server image holds) is set up as docs/kubernetes.md says: the
// chart's policy synced, the authenticator's public-keys set to the JWKS
// of a test issuer that mints the pods' service-account tokens. Two
// Follower pods rendered from the chart and the application pod of
// deploy/examples run with `podman kube play` on the host's network. The
// test asserts: each pod's seed fetcher fetched and verified its own seed;
// each Follower becomes ready, has its own certificate and attaches to the
// Leader with it; a secret set on the Leader after they started
// is read from both (X-Sower-Min-Revision); the application reads it with
// the token sower-authn-client wrote, served by the first Follower (the
// certificate that served it is that Follower's); the Follower runs as
// 65532 with a read-only root file system.
func TestFollowerPods(t *testing.T) {
	requirePodman(t)
	buildImages(t)
	c := newCluster(t, chartPolicy)
	reader := buildReader(t, c.dir)
	hc := c.followerClient(t)
	ports := freePorts(t, 4)
	pods := []string{"conjur-follower-podtest-0", "conjur-follower-podtest-1"}
	httpPort := func(i int) int { return ports[2*i] }
	for i, name := range pods {
		play(t, c.dir, c.followerPod(t, name, httpPort(i), ports[2*i+1]))
	}
	serials := make([]string, len(pods))
	seeds := make([]string, len(pods))
	for i, name := range pods {
		serials[i] = waitReady(t, hc, name, httpPort(i), 3*time.Minute)
		// The init container logs "seed unpacked" only after the seed's
		// signatures verified under the pinned CA.
		seeds[i] = seedUnpacked(logs(name + "-seed-fetcher"))
		if seeds[i] == "" {
			t.Fatalf("%s: the seed fetcher did not log \"seed unpacked\":\n%s", name, logs(name+"-seed-fetcher"))
		}
	}
	if seeds[0] == seeds[1] || serials[0] == serials[1] || serials[0] == "" {
		t.Fatalf("the Follower pods share a seed or a certificate: seeds %v, serials %v", seeds, serials)
	}

	// Each seed is on the Leader's record with the certificates it holds:
	// the one its Follower serves with, and the client certificate the
	// Follower attaches to the Leader with (`sower cluster followers`).
	// Their names are alike: every pod's certificates carry the Service's
	// name (FOLLOWER_HOSTNAME), as in Kubernetes.
	records := c.seedRecords()
	poll(t, time.Minute, "both Followers in `sower cluster followers`", func() (bool, string) {
		fs := c.followers()
		for i, name := range pods {
			rec, ok := records[seeds[i]]
			if !ok {
				t.Fatalf("%s: seed %s is not on the Leader's record %v", name, seeds[i], records)
			}
			if !slices.ContainsFunc(rec.Serials, func(s string) bool { return sameSerial(s, serials[i]) }) {
				t.Fatalf("%s serves with certificate %s, not one of its seed's %v", name, serials[i], rec.Serials)
			}
			if !slices.ContainsFunc(fs, func(f attached) bool {
				return slices.ContainsFunc(rec.Serials, func(s string) bool { return sameSerial(s, f.Serial) && !sameSerial(s, serials[i]) })
			}) {
				return false, fmt.Sprintf("%s (seed %s, certificates %v) is not attached: %+v", name, seeds[i], rec.Serials, fs)
			}
		}
		return true, ""
	})

	// Replication: a secret set on the Leader after the Followers started
	// is read from each, waiting for the write's revision.
	value := "s3cret-" + rand.Text()
	rev := c.setSecret(shopSecretID, value)
	for i, name := range pods {
		req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:"+strconv.Itoa(httpPort(i))+secretPath(shopSecretID), nil)
		req.Header.Set("Authorization", c.token)
		req.Header.Set("X-Sower-Min-Revision", strconv.FormatInt(rev, 10))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: read the secret: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got, _ := strconv.ParseInt(resp.Header.Get("X-Sower-Revision"), 10, 64)
		if resp.StatusCode != http.StatusOK || string(body) != value || got < rev {
			t.Fatalf("%s: secret read after revision %d: %d %q at revision %d", name, rev, resp.StatusCode, body, got)
		}
	}

	// The application pod, pointed at the first Follower.
	app := "shop-podtest"
	play(t, c.dir, c.appPod(t, app, httpPort(0), reader))
	var res struct {
		Status   int    `json:"status"`
		Value    string `json:"value"`
		Revision string `json:"revision"`
		Serial   string `json:"serial"`
		Error    string `json:"error"`
	}
	poll(t, 3*time.Minute, "the application's secret read", func() (bool, string) {
		out := logs(app + "-app")
		_, line, ok := strings.Cut(out, "appreader: {")
		if !ok {
			return false, out + "\nauthenticator-init: " + logs(app+"-authenticator-init")
		}
		line, _, _ = strings.Cut(line, "\n")
		return json.Unmarshal([]byte("{"+line), &res) == nil, out
	})
	if res.Status != http.StatusOK || res.Value != value {
		t.Fatalf("the application read %d %q (%s), want %q\nauthenticator: %s", res.Status, res.Value, res.Error, value, logs(app+"-authenticator"))
	}
	if got, _ := strconv.ParseInt(res.Revision, 10, 64); res.Serial != serials[0] || got < rev {
		t.Fatalf("the application's read was served by certificate %s at revision %q; the first Follower's is %s (the second's %s), the write's revision %d",
			res.Serial, res.Revision, serials[0], serials[1], rev)
	}

	// The Follower runs as 65532, by the kernel's account, with a
	// read-only root file system.
	ctr := pods[0] + "-follower"
	out, err := podmanOut("inspect", "--format", "{{.State.Pid}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}}", ctr)
	f := strings.Fields(out)
	if err != nil || len(f) < 3 || f[1] != "true" || !strings.HasPrefix(f[2], strconv.Itoa(nonRoot)) {
		t.Fatalf("podman inspect %s: %q, %v: want a read-only root and user %d", ctr, out, err, nonRoot)
	}
	status, err := os.ReadFile("/proc/" + f[0] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") && len(strings.Fields(l)) == 5 {
			for _, id := range strings.Fields(l)[1:] {
				if id != strconv.Itoa(nonRoot) {
					t.Fatalf("the Follower's process runs as %s", l)
				}
			}
		}
	}
}
