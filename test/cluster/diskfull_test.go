package clustertest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// diskFullFS is the size of the file system the test mounts; diskFullFloor
// is the node's --min-free-disk. etcd preallocates two 64 MB WAL segments
// at start, so the room left is about 190 MiB.
const (
	diskFullFS    = "320m"
	diskFullFloor = 128 << 20
)

// TestDiskFull is issue 11's sixth point: a Leader whose data dir is on a
// small tmpfs the test fills refuses writes with a clear 507 (the Conjur
// paths and /v1), goes on serving reads, authentication and health, stays
// alive, and accepts writes again once the file is removed, without a
// restart; every write acknowledged before is still there, and after a
// restart too.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "default", 0)
	l1 := h.node("leader-1", "127.0.0.2")
	mountTmpfs(t, l1.dir, l1)
	if err := l1.start("--min-free-disk", fmt.Sprint(diskFullFloor)); err != nil {
		t.Fatal(err)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	var vars strings.Builder
	for i := range 4 {
		fmt.Fprintf(&vars, "- !variable disk/v%d\n", i)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, vars.String()); err != nil || code != http.StatusCreated {
		t.Fatalf("load the variables: %d %s %v", code, body, err)
	}
	secretURL := func(i int) string { return fmt.Sprintf("%s/secrets/%s/variable/disk%%2Fv%d", l1.url(), account, i) }
	acked := map[int]string{}
	set := func(i int, v string) (int, string) {
		t.Helper()
		code, body, err := h.do(http.MethodPost, secretURL(i), tok, []byte(v))
		if err != nil {
			t.Fatalf("set disk/v%d: %v", i, err)
		}
		if code == http.StatusCreated {
			acked[i] = v
		}
		return code, body
	}
	for i := range 2 {
		if code, body := set(i, fmt.Sprintf("before-%d", i)); code != http.StatusCreated {
			t.Fatalf("set disk/v%d with room: %d %s", i, code, body)
		}
	}

	// Fill the file system to below the floor, with room for what etcd
	// still writes.
	fill := filepath.Join(l1.dir, "fill")
	fillTo(t, l1.dir, fill, diskFullFloor-24<<20)

	code, body := set(2, "while-full")
	if code != http.StatusInsufficientStorage {
		t.Fatalf("secret set on a full disk: %d %s, want 507", code, body)
	}
	for _, want := range []string{"insufficient_storage", "--min-free-disk", "a write needs 1342", "bytes (", "without a restart"} {
		if !strings.Contains(body, want) {
			t.Errorf("the 507 body does not say %q: %s", want, body)
		}
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, "- !variable disk/while-full\n"); err != nil || code != http.StatusInsufficientStorage {
		t.Errorf("policy load on a full disk: %d %s %v, want 507", code, body, err)
	}
	v1Body := fmt.Sprintf(`{"value":%q}`, base64.StdEncoding.EncodeToString([]byte("v1-while-full")))
	if code, body, err := h.do(http.MethodPost, l1.url()+"/v1/secrets/"+account+"/variable/disk/v3", tok, []byte(v1Body)); err != nil ||
		code != http.StatusInsufficientStorage || !strings.Contains(body, "min-free-disk") {
		t.Errorf("/v1 secret set on a full disk: %d %s %v, want 507 naming the flag", code, body, err)
	}
	// etcd refuses writes too (the node's NOSPACE alarm), so background
	// writers (the audit trail) cannot eat the headroom either.
	waitLog(t, l1, "refusing writes (etcd NOSPACE alarm)")

	// Reads, authentication and health go on; the process is alive.
	for i, v := range acked {
		if code, body, err := h.do(http.MethodGet, secretURL(i), tok, nil); err != nil || code != http.StatusOK || body != v {
			t.Errorf("read disk/v%d on a full disk: %d %q %v, want %q", i, code, body, err, v)
		}
	}
	if _, err := h.authenticate(l1.url()); err != nil {
		t.Errorf("authenticate on a full disk: %v", err)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body, err := h.do(http.MethodGet, l1.url()+path, "", nil); err != nil || code != http.StatusOK {
			t.Errorf("%s on a full disk: %d %.200s %v", path, code, body, err)
		}
	}
	if _, body, _ := h.do(http.MethodGet, l1.url()+"/metrics", "", nil); !strings.Contains(body, "sower_disk_writes_refused 1") {
		t.Errorf("/metrics on a full disk does not say sower_disk_writes_refused 1")
	}
	alive(t, l1)

	// Space returns: writes succeed again, without a restart.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := set(2, "after")
		if code == http.StatusCreated {
			break
		}
		if code != http.StatusInsufficientStorage || time.Now().After(deadline) {
			t.Fatalf("secret set after space returned: %d %s, want 201 within 30s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, "- !variable disk/after\n"); err != nil || code != http.StatusCreated {
		t.Errorf("policy load after space returned: %d %s %v", code, body, err)
	}
	if _, body, _ := h.do(http.MethodGet, l1.url()+"/metrics", "", nil); !strings.Contains(body, "sower_disk_writes_refused 0") {
		t.Errorf("/metrics after recovery does not say sower_disk_writes_refused 0")
	}
	alive(t, l1)

	// Everything acknowledged is there, now and after a restart.
	check := func(when string) {
		for i, v := range acked {
			if code, body, err := h.do(http.MethodGet, secretURL(i), tok, nil); err != nil || code != http.StatusOK || body != v {
				t.Errorf("%s: disk/v%d is %d %q %v, want %q", when, i, code, body, err, v)
			}
		}
	}
	check("after recovery")
	l1.stop()
	if err := l1.start("--min-free-disk", fmt.Sprint(diskFullFloor)); err != nil {
		t.Fatal(err)
	}
	if tok, err = h.authenticate(l1.url()); err != nil {
		t.Fatal(err)
	}
	check("after a restart")
}

// mountTmpfs mounts a tmpfs of diskFullFS at dir for the test; it skips the
// test when not root, and fails it under CI when the mount is refused. The
// cleanup stops p first: a busy file system does not unmount.
func mountTmpfs(t *testing.T, dir string, p *proc) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a full disk is a tmpfs the test mounts: run as root")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+diskFullFS+",mode=0700"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs at %s: %v", dir, err)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		p.kill9()
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// fillTo allocates a file at path so that the file system of dir keeps
// about free bytes free.
func fillTo(t *testing.T, dir, path string, free uint64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := st.Bavail * uint64(st.Bsize)
	if avail <= free {
		t.Fatalf("only %d bytes free on %s before filling; want more than %d", avail, dir, free)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(avail-free)); err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
}

// waitLog waits up to 30 s for the node's log to say want.
func waitLog(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, _ := os.ReadFile(p.logPath)
		if strings.Contains(string(raw), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log of %s does not say %q within 30s: %s", p.name, want, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive fails the test if the node's process has exited.
func alive(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("%s exited: %s", p.name, p.tail())
	default:
	}
}

// TestDiskFullFollower: a Follower whose data dir fills stops taking
// updates instead of exiting (its private etcd would exit on a failed
// write), serves the copy it has, and catches up by itself once space is
// back.
func TestDiskFullFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "default", 0)
	l1 := h.node("leader-1", "127.0.0.2")
	if err := l1.start(); err != nil {
		t.Fatal(err)
	}
	admin, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.Replace(h.clusterPolicy("leader-1"), "    - !webservice\n",
		"    - !webservice\n      annotations:\n        sower/follower-hostnames: \"*."+followerDomain+"\"\n", 1) + "- !variable db/password\n"
	if code, body, err := h.loadPolicy(l1.url(), admin, pol); err != nil || code != http.StatusCreated {
		t.Fatalf("load policy: %d %s %v", code, body, err)
	}
	if _, err := setSecret(l1, admin, "before"); err != nil {
		t.Fatal(err)
	}
	f, _ := h.followerNode(l1.url(), "follower-1", "127.0.0.5")
	mountTmpfs(t, f.dir, f)
	f.follower = append(f.follower, "--min-free-disk", fmt.Sprint(diskFullFloor))
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		code, _, body, err := f.req(http.MethodGet, secretPath, admin, "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("read on the Follower: %d %q %v", code, body, err)
		}
		return body
	}
	waitRead := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for read() != want {
			if time.Now().After(deadline) {
				t.Fatalf("the Follower does not serve %q within 30s: %s", want, f.tail())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitRead("before")

	fill := filepath.Join(f.dir, "fill")
	fillTo(t, f.dir, fill, diskFullFloor-24<<20)
	waitLog(t, f, "refusing writes (etcd NOSPACE alarm)")
	if _, err := setSecret(l1, admin, "after"); err != nil {
		t.Fatal(err)
	}
	// The Follower tries to store the write, cannot, and serves what it
	// has.
	waitLog(t, f, "database space exceeded")
	if got := read(); got != "before" {
		t.Errorf("the Follower on a full disk serves %q, want the value it had, %q", got, "before")
	}
	alive(t, f)

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitRead("after")
	alive(t, f)
}

// TestDiskFullStandby: a Standby whose disk fills raises its alarm, so the
// Leader, whose own disk is fine, refuses writes naming it, before the
// Standby's etcd would exit on a write it cannot store; both stay up and
// writes resume once the Standby has space again. A Standby whose disk
// stays full can be removed, and then the cluster writes again.
func TestDiskFullStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real sower processes")
	}
	h := newHarness(t, "prod", 2)
	l1 := h.node("leader-1", "127.0.0.2")
	s1 := h.node("standby-1", "127.0.0.3")
	mountTmpfs(t, s1.dir, s1)
	if err := l1.start("--cluster", "prod"); err != nil {
		t.Fatal(err)
	}
	tok, err := h.authenticate(l1.url())
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := h.loadPolicy(l1.url(), tok, h.clusterPolicy("leader-1", "standby-1")+"- !variable db/password\n"); err != nil || code != http.StatusCreated {
		t.Fatalf("load the cluster policy: %d %s %v", code, body, err)
	}
	if err := h.join(l1.url(), s1, "--min-free-disk", fmt.Sprint(diskFullFloor)); err != nil {
		t.Fatal(err)
	}
	h.waitVoters(l1.url(), "leader-1", "standby-1")
	if _, err := setSecret(l1, tok, "before"); err != nil {
		t.Fatal(err)
	}

	fill := filepath.Join(s1.dir, "fill")
	fillTo(t, s1.dir, fill, diskFullFloor-24<<20)
	waitLog(t, s1, "refusing writes (etcd NOSPACE alarm)")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := h.do(http.MethodPost, l1.url()+secretPath, tok, []byte("while-full"))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusInsufficientStorage {
			if !strings.Contains(body, "member standby-1") {
				t.Errorf("the Leader's 507 does not name the Standby whose disk is full: %s", body)
			}
			break
		}
		// Until the Leader has applied the alarm, a write may still
		// commit (the Standby's floor leaves room for it).
		if code != http.StatusCreated || time.Now().After(deadline) {
			t.Fatalf("secret set while the Standby's disk is full: %d %s, want 507 within 30s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body, err := h.do(http.MethodGet, l1.url()+secretPath, tok, nil); err != nil || code != http.StatusOK {
		t.Errorf("read on the Leader while the Standby is full: %d %s %v", code, body, err)
	}
	alive(t, l1)
	alive(t, s1)

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body, err := h.do(http.MethodPost, l1.url()+secretPath, tok, []byte("after"))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusCreated {
			break
		}
		if code != http.StatusInsufficientStorage || time.Now().After(deadline) {
			t.Fatalf("secret set after the Standby's space returned: %d %s, want 201 within 30s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	alive(t, s1)

	// Full again, for good: the Standby can still be removed, and then the
	// cluster writes again.
	fillTo(t, s1.dir, fill, diskFullFloor-24<<20)
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body, err := h.do(http.MethodPost, l1.url()+secretPath, tok, []byte("full-again"))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusInsufficientStorage {
			break
		}
		if code != http.StatusCreated || time.Now().After(deadline) {
			t.Fatalf("secret set while the Standby's disk is full again: %d %s, want 507 within 30s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := h.sower(l1.url(), "cluster", "remove", "standby-1"); err != nil {
		t.Fatalf("remove the Standby whose disk is full: %v %s", err, out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body, err := h.do(http.MethodPost, l1.url()+secretPath, tok, []byte("after-removal"))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusCreated {
			break
		}
		if code != http.StatusInsufficientStorage || time.Now().After(deadline) {
			t.Fatalf("secret set after the full Standby was removed: %d %s, want 201 within 30s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
