package conjur_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
	conjurauthn "github.com/cyberark/conjur-api-go/conjurapi/authn"
	"github.com/cyberark/conjur-api-go/conjurapi/response"
)

const secretsPolicy = `
- !policy
  id: app
  body:
  - !variable db/password
  - !variable
    id: tls/cert
    annotations:
      conjur/mime_type: application/x-pem-file
  - !variable empty
  - !variable binary
  - !variable hidden
  - !layer readers
  - !permit
    role: !layer readers
    privileges: [ read, execute ]
    resources: [ !variable db/password, !variable tls/cert, !variable empty, !variable binary ]
- !host app/web-01
- !host app/peeker
- !grant
  role: !layer app/readers
  member: !host app/web-01
- !permit
  role: !host app/peeker
  privileges: [ read ]
  resources: [ !variable app/db/password ]
`

// conjurError returns the HTTP status of a conjur-api-go error.
func conjurStatus(err error) int {
	var ce *response.ConjurError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// TestConjurClientSecrets drives /secrets with the real Conjur client:
// AddSecret, RetrieveSecret, RetrieveSecretWithVersion and
// RetrieveBatchSecrets, with Conjur's status codes for what is missing,
// hidden or not permitted.
func TestConjurClientSecrets(t *testing.T) {
	n := startAuthnNode(t)
	keys := n.load(t, secretsPolicy)
	admin := n.admin(t)
	for i := 1; i <= 22; i++ {
		if err := admin.AddSecret("app/db/password", fmt.Sprintf("pw-%d", i)); err != nil {
			t.Fatalf("AddSecret: %v", err)
		}
	}
	if err := admin.AddSecret("app/tls/cert", "-----BEGIN CERTIFICATE-----\n"); err != nil {
		t.Fatal(err)
	}
	if err := admin.AddSecret("app/binary", "\xff\xfe\x00raw"); err != nil {
		t.Fatal(err)
	}
	if err := admin.AddSecret("app/hidden", "h"); err != nil {
		t.Fatal(err)
	}
	web, err := conjurapi.NewClientFromKey(conjurapi.Config{Account: "acme", ApplianceURL: n.url, SSLCertPath: n.caFile},
		conjurauthn.LoginPair{Login: "host/app/web-01", APIKey: keys["acme:host:app/web-01"]})
	if err != nil {
		t.Fatal(err)
	}
	peeker, err := conjurapi.NewClientFromKey(conjurapi.Config{Account: "acme", ApplianceURL: n.url, SSLCertPath: n.caFile},
		conjurauthn.LoginPair{Login: "host/app/peeker", APIKey: keys["acme:host:app/peeker"]})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("latest and by version", func(t *testing.T) {
		v, err := web.RetrieveSecret("app/db/password")
		if err != nil || string(v) != "pw-22" {
			t.Fatalf("RetrieveSecret = %q, %v", v, err)
		}
		v, err = web.RetrieveSecretWithVersion("app/db/password", 3)
		if err != nil || string(v) != "pw-3" {
			t.Fatalf("version 3 = %q, %v", v, err)
		}
		// 22 values, the latest 20 kept: versions 1 and 2 are gone.
		if _, err := web.RetrieveSecretWithVersion("app/db/password", 2); conjurStatus(err) != http.StatusNotFound {
			t.Fatalf("pruned version: %v, want 404", err)
		}
	})
	t.Run("batch", func(t *testing.T) {
		got, err := web.RetrieveBatchSecrets([]string{"app/db/password", "app/tls/cert"})
		if err != nil || string(got["acme:variable:app/db/password"]) != "pw-22" || string(got["acme:variable:app/tls/cert"]) != "-----BEGIN CERTIFICATE-----\n" {
			t.Fatalf("RetrieveBatchSecrets = %q, %v", got, err)
		}
		got, err = web.RetrieveBatchSecretsSafe([]string{"app/binary", "app/db/password"})
		if err != nil || string(got["acme:variable:app/binary"]) != "\xff\xfe\x00raw" {
			t.Fatalf("RetrieveBatchSecretsSafe = %q, %v", got, err)
		}
	})
	tests := map[string]struct {
		do   func() error
		want int
	}{
		"variable without a value": {func() error { _, err := web.RetrieveSecret("app/empty"); return err }, http.StatusNotFound},
		"variable that is hidden":  {func() error { _, err := web.RetrieveSecret("app/hidden"); return err }, http.StatusNotFound},
		"variable that is not":     {func() error { _, err := web.RetrieveSecret("app/nope"); return err }, http.StatusNotFound},
		"seen but not executable":  {func() error { _, err := peeker.RetrieveSecret("app/db/password"); return err }, http.StatusForbidden},
		"update without privilege": {func() error { return web.AddSecret("app/db/password", "x") }, http.StatusForbidden},
		"empty value":              {func() error { return admin.AddSecret("app/db/password", "") }, http.StatusUnprocessableEntity},
		"batch with an empty one": {func() error {
			_, err := web.RetrieveBatchSecrets([]string{"app/db/password", "app/empty"})
			return err
		}, http.StatusNotFound},
		"batch with a hidden one": {func() error {
			_, err := web.RetrieveBatchSecrets([]string{"app/db/password", "app/hidden"})
			return err
		}, http.StatusNotFound},
		"batch not executable": {func() error {
			_, err := peeker.RetrieveBatchSecrets([]string{"app/db/password"})
			return err
		}, http.StatusForbidden},
		"batch of binary without base64": {func() error {
			_, err := web.RetrieveBatchSecrets([]string{"app/binary"})
			return err
		}, http.StatusNotAcceptable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := conjurStatus(tc.do()); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
}

// TestSecretsWireFormat checks what conjur-api-go does not look at: the
// content type of a value, 201 on write, and the version parameter's
// validation.
func TestSecretsWireFormat(t *testing.T) {
	n := startAuthnNode(t)
	n.load(t, secretsPolicy)
	n.setVariables(t, map[string]string{"app/tls/cert": "PEM", "app/db/password": "pw"})
	tok, err := n.admin(t).Authenticate(conjurauthn.LoginPair{Login: "admin", APIKey: n.adminKey})
	if err != nil {
		t.Fatal(err)
	}
	auth := `Token token="` + b64(tok) + `"`
	do := func(method, path, body string) (*http.Response, string) {
		req, _ := http.NewRequest(method, n.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		resp, err := n.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	tests := map[string]struct {
		method, path, body string
		status             int
		contentType        string
		bodyHas            string
	}{
		"write is 201":            {"POST", "/secrets/acme/variable/app%2Fdb%2Fpassword", "pw2", http.StatusCreated, "", ""},
		"mime type annotation":    {"GET", "/secrets/acme/variable/app%2Ftls%2Fcert", "", http.StatusOK, "application/x-pem-file", "PEM"},
		"octet-stream by default": {"GET", "/secrets/acme/variable/app%2Fdb%2Fpassword?version=1", "", http.StatusOK, "application/octet-stream", "pw"},
		"version not a number":    {"GET", "/secrets/acme/variable/app%2Fdb%2Fpassword?version=latest", "", http.StatusUnprocessableEntity, "application/json", "invalid type for parameter 'version'"},
		"version zero":            {"GET", "/secrets/acme/variable/app%2Fdb%2Fpassword?version=0", "", http.StatusNotFound, "application/json", "Requested version does not exist"},
		"empty variable":          {"GET", "/secrets/acme/variable/app%2Fempty", "", http.StatusNotFound, "application/json", "CONJ00076E Variable acme:variable:app/empty is empty or not found."},
		"unknown variable":        {"GET", "/secrets/acme/variable/app%2Fnope", "", http.StatusNotFound, "application/json", `"code":"not_found"`},
		"other account":           {"GET", "/secrets/other/variable/app%2Fdb%2Fpassword", "", http.StatusNotFound, "application/json", "not found"},
		"batch without ids":       {"GET", "/secrets?variable_ids=", "", http.StatusUnprocessableEntity, "application/json", "variable_ids"},
		"batch":                   {"GET", "/secrets?variable_ids=acme:variable:app/tls/cert", "", http.StatusOK, "application/json", `{"acme:variable:app/tls/cert":"PEM"}`},
		"v1 JSON API":             {"GET", "/v1/secrets/acme/variable/app/tls/cert", "", http.StatusOK, "application/json", `"value":"UEVN"`},
		"without a token":         {"GET", "/secrets/acme/variable/app%2Ftls%2Fcert", "", 0, "", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.status == 0 {
				req, _ := http.NewRequest(tc.method, n.url+tc.path, nil)
				resp, err := n.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("without a token: %s", resp.Status)
				}
				return
			}
			resp, body := do(tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status || (tc.contentType != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType)) || !strings.Contains(body, tc.bodyHas) {
				t.Fatalf("%s %s = %s %q %q; want %d %s containing %q", tc.method, tc.path, resp.Status, resp.Header.Get("Content-Type"), body, tc.status, tc.contentType, tc.bodyHas)
			}
		})
	}
}
