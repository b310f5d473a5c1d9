// Package podtest runs sower's images and Kubernetes pod specs in real
// containers with podman (../shared/CONTAINERS.md): the images are built
// with `make image` under the tag "podtest", containers run with a
// read-only root file system on the host's network, and every container
// and image the tests create is removed by name at the end.
//
// Without podman the tests skip, saying so; under CI (CI set) they fail.
package podtest

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

const tag = "podtest"

var programs = []string{"sower", "sower-seed-fetcher", "sower-authn-client"}

func image(program string) string { return "localhost/" + program + ":" + tag }

// requirePodman skips (or, under CI, fails) when podman cannot run here.
func requirePodman(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("podman is missing under CI: `make system-deps` (as root) installs podman and runc")
		}
		t.Skip("podman is not installed: run `make system-deps` as root (apt-get install podman runc) to run the container tests")
	}
}

// podman runs podman and returns its combined output.
func podman(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "podman", args...).CombinedOutput()
	return string(out), err
}

var (
	buildOnce sync.Once
	buildOut  []byte
	buildErr  error
	built     bool
)

// TestMain removes the images the tests built, by name, once every test
// has run.
func TestMain(m *testing.M) {
	pauseBefore := pauseImages()
	code := m.Run()
	if built {
		for _, p := range programs {
			_ = exec.Command("podman", "rmi", "--force", image(p)).Run()
		}
	}
	// `podman kube play` builds its pod's pause image on first use: a
	// test run that made it removes it.
	for _, img := range pauseImages() {
		if !slices.Contains(pauseBefore, img) {
			_ = exec.Command("podman", "rmi", img).Run()
		}
	}
	os.Exit(code)
}

// pauseImages are the local podman-pause images, by name.
func pauseImages() []string {
	out, err := exec.Command("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=localhost/podman-pause").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// buildImages runs `make image` with the tag "podtest" once per test
// binary; TestMain removes the images at the end. The Go build cache and
// podman's layer cache keep a build after a small change cheap.
func buildImages(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		root := repoRoot(t)
		built = true
		buildOut, buildErr = exec.Command("make", "-C", root, "--no-print-directory", "image", "IMAGE_REPO=localhost", "VERSION="+tag).CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("make image: %v\n%s", buildErr, buildOut)
	}
	t.Logf("make image:\n%s", buildOut)
}

// repoRoot is the module's root (the test runs in deploy/podtest).
func repoRoot(t testing.TB) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestServerImage: the server image runs as user 65532 with a read-only root
// file system, prints its version, and a single-node Leader started from it
// on the host's network answers /healthz.
func TestServerImage(t *testing.T) {
	requirePodman(t)
	buildImages(t)

	out, err := podman(t, "image", "inspect", "--format", "{{.Config.User}} {{index .Config.Labels \"org.opencontainers.image.version\"}}", image("sower"))
	if err != nil || strings.TrimSpace(out) != "65532:65532 "+tag {
		t.Fatalf("image user and version label: %q, %v", out, err)
	}
	out, err = podman(t, "run", "--rm", "--read-only", image("sower"), "--version")
	if err != nil || !strings.Contains(out, "sower version "+tag) {
		t.Fatalf("sower --version in the image: %q, %v", out, err)
	}
	// No shell in the image.
	if out, err := podman(t, "run", "--rm", "--entrypoint", "/bin/sh", image("sower"), "-c", "true"); err == nil {
		t.Fatalf("the image has a shell: %s", out)
	}

	a := testutil.FreeAddrs(t, 4)
	name := "sower-podtest-leader"
	_, _ = podman(t, "rm", "--force", name)
	t.Cleanup(func() { _, _ = podman(t, "rm", "--force", "--time", "5", name) })
	out, err = podman(t, "run", "--detach", "--name", name, "--read-only", "--network", "host",
		// podman 4.3 has no uid= for --tmpfs: a sticky world-writable mount, in
		// which the server makes its own 0700 data dir.
		"--tmpfs", "/var/lib/sower:rw,size=256m,mode=1777",
		image("sower"), "server", "--data-dir", "/var/lib/sower/data", "--account", "acme",
		"--grpc-addr", a[0], "--http-addr", a[1], "--etcd-client-addr", a[2], "--etcd-peer-addr", a[3])
	if err != nil {
		t.Fatalf("podman run the Leader: %v\n%s", err, out)
	}
	// The probe does what a kubelet's HTTPS probe does: no certificate check.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := hc.Get("https://" + a[1] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			logs, _ := podman(t, "logs", name)
			t.Fatalf("the Leader in the container never answered /healthz: %v\n%s", err, logs)
		}
		time.Sleep(200 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	out, err = podman(t, "inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", name)
	if err != nil || strings.TrimSpace(out) != "65532:65532 true" {
		t.Fatalf("container user and read-only root: %q, %v", out, err)
	}
}
