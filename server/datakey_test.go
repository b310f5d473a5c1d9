package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/pki"
)

// TestRotateDataKeySurvivesRestart: after a rotation every secret in etcd is
// sealed under the new version, the node keeps authenticating, and a restart
// opens everything with the rewritten data.key.
func TestRotateDataKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, dir)
	s, stop := startNode(t, c)
	_, h := s.Addrs()
	base := "https://" + h.String()
	hc := testutil.HTTPClient(t, dir)
	raw, _ := os.ReadFile(filepath.Join(dir, "admin.key"))
	key := strings.TrimSpace(string(raw))
	code, body := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+key+`"}`, nil)
	if code != 200 {
		t.Fatalf("authenticate: %d %s", code, body)
	}
	var ar struct{ Token string }
	json.Unmarshal(body, &ar)
	authz := map[string]string{"Authorization": `Token token="` + ar.Token + `"`}

	code, body = post(t, hc, base+"/v1/data-key:rotate", `{}`, authz)
	if code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	var rr struct {
		Version  int
		Resealed string
	}
	json.Unmarshal(body, &rr)
	if rr.Version != 2 || rr.Resealed == "" || rr.Resealed == "0" {
		t.Fatalf("rotation = %s, want version 2 with values re-sealed", body)
	}
	kr, err := pki.LoadKeyring(filepath.Join(dir, "data.key"))
	if err != nil || kr.Primary() != 2 || len(kr.Versions()) != 2 {
		t.Fatalf("data.key after rotation: %v %v", kr, err)
	}
	if code, _ := post(t, hc, base+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+key+`"}`, nil); code != 200 {
		t.Fatalf("authenticate after rotation: %d", code)
	}
	stop()

	s2, _ := startNode(t, c)
	_, h2 := s2.Addrs()
	if code, body := post(t, hc, "https://"+h2.String()+"/v1/authn/acme/authenticate", `{"login":"admin","apiKey":"`+key+`"}`, nil); code != 200 {
		t.Fatalf("authenticate after a restart on the rotated key: %d %s", code, body)
	}
}
