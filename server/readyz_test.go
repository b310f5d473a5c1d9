package server

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
)

// /readyz answers 200 only when the node takes the writes of its role: the
// first write after it is a 201, not a 503 NOT_LEADER. A restarted Leader
// is the sharp case: the election key of its previous term names it Leader
// until that lease expires, but it writes only once it has won again.
func TestReadyMeansTheLeaderTakesWrites(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, dir)
	_, stop := startNode(t, c)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	hc := testutil.HTTPClient(t, dir)
	base := "https://" + c.HTTPAddr
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not answer 200 within 60s")
		}
		resp, err := hc.Get(base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}

	key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(base+"/authn/acme/admin/authenticate", "text/plain", strings.NewReader(strings.TrimSpace(string(key))))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authenticate: %d %s", resp.StatusCode, tok)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/policies/acme/policy/root", strings.NewReader("- !variable after-ready\n"))
	req.Header.Set("Authorization", `Token token="`+base64.StdEncoding.EncodeToString(tok)+`"`)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("the first load after /readyz said 200: %d %s, want 201", resp.StatusCode, body)
	}
}
