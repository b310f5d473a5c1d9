package conjur_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sowerproject/sower/server/etcdstore"
)

// TestCLIUserChangePassword: `conjur user change-password` and `conjur
// login` with a password, through conjur-api-go (ChangeUserPassword,
// Login), as Conjur's change_password.feature: a user changes its
// password with its API key or its current password (204), then logs in
// with it and gets an API key that authenticates; Conjur's 422 for a weak
// password, 401 for an access token or another role, 403 for a host. Only
// a bcrypt hash of the password is stored.
func TestCLIUserChangePassword(t *testing.T) {
	n := startAuthnNode(t)
	keys := n.load(t, "- !user alice\n- !user bob\n- !host app\n")
	aliceKey := keys["acme:user:alice"]
	c := n.admin(t)

	if _, err := c.ChangeUserPassword("alice", aliceKey, "New-Password1"); err != nil {
		t.Fatalf("change the password with the API key: %v", err)
	}
	key, err := c.Login("alice", "New-Password1")
	if err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	alice := n.as(t, "alice", string(key))
	if who, err := alice.WhoAmI(); err != nil || !strings.Contains(string(who), `"username":"alice"`) {
		t.Fatalf("the API key of a password login does not authenticate: %s %v", who, err)
	}
	// sower keeps only the key's hash: the password login issued a new key.
	if _, err := c.Login("alice", aliceKey); conjurStatus(err) != http.StatusUnauthorized {
		t.Errorf("the API key before the password login: %v, want 401 (it was rotated)", err)
	}
	// The current password is a credential too; escaped special characters count.
	if _, err := c.ChangeUserPassword("alice", "New-Password1", "NewPassword1/"); err != nil {
		t.Fatalf("change the password with the password: %v", err)
	}
	if key, err = c.Login("alice", "NewPassword1/"); err != nil {
		t.Fatalf("login with the changed password: %v", err)
	}
	if _, err := c.Login("alice", "New-Password1"); conjurStatus(err) != http.StatusUnauthorized {
		t.Errorf("login with the old password: %v, want 401", err)
	}

	resp, err := n.etcd.Get(context.Background(), etcdstore.CredentialKey("acme:user:alice"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("alice's credential record: %v", err)
	}
	var rec struct {
		PasswordHash []byte `json:"password_hash"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(rec.PasswordHash), "$2a$12$") || strings.Contains(string(resp.Kvs[0].Value), "NewPassword1/") {
		t.Errorf("stored credential %s: want a bcrypt (cost 12) hash and never the password", resp.Kvs[0].Value)
	}

	weak := `{"error":{"code":"validation_failed","message":"password CONJ00046E The password you have chosen does not meet the complexity requirements. Choose a password that includes: 12-128 characters, 2 uppercase letters, 2 lowercase letters, 1 digit and 1 special character","details":[{"code":"validation_failed","target":"password","message":"CONJ00046E The password you have chosen does not meet the complexity requirements. Choose a password that includes: 12-128 characters, 2 uppercase letters, 2 lowercase letters, 1 digit and 1 special character"}]}}`
	basic := func(login, secret string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(login, secret) }
	}
	tests := map[string]struct {
		auth  func(*http.Request) // nil: the admin's access token
		query string
		body  string
		want  int
		exact string // the whole body (as JSON), when set
	}{
		"11 characters":              {basic("bob", keys["acme:user:bob"]), "", "My-Passwor1", 422, weak},
		"one upper-case letter":      {basic("bob", keys["acme:user:bob"]), "", "My-password12", 422, weak},
		"no special character":       {basic("bob", keys["acme:user:bob"]), "", "MyPassword12", 422, weak},
		"129 characters":             {basic("bob", keys["acme:user:bob"]), "", "Aa1-" + strings.Repeat("Bb", 62) + "c", 422, weak},
		"an access token":            {nil, "", "New-Password1", 401, `{"error":{"code":"unauthorized","message":"Credential strength is insufficient"}}`},
		"another user's password":    {basic("alice", "NewPassword1/"), "?role=user:bob", "New-Password1", 401, ""},
		"a wrong current password":   {basic("bob", "Not-The-Key-1"), "", "New-Password1", 401, ""},
		"a host":                     {basic("host/app", keys["acme:host:app"]), "", "New-Password1", 403, ""},
		"its own role named in role": {basic("bob", keys["acme:user:bob"]), "?role=acme:user:bob", "Bob-Password-1", 204, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPut, n.url+"/authn/acme/password"+tc.query, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var code int
			var body []byte
			if tc.auth == nil {
				code, body = submit(t, c, req, nil)
			} else {
				tc.auth(req)
				r, err := n.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Body.Close()
				body, _ = io.ReadAll(r.Body)
				code = r.StatusCode
			}
			if code != tc.want {
				t.Fatalf("%d %s, want %d", code, body, tc.want)
			}
			var got, exp any
			if tc.exact != "" && (json.Unmarshal(body, &got) != nil || json.Unmarshal([]byte(tc.exact), &exp) != nil || mustJSON(got) != mustJSON(exp)) {
				t.Fatalf("%s\nwant %s", body, tc.exact)
			}
		})
	}
	if _, err := c.Login("bob", "Bob-Password-1"); err != nil {
		t.Errorf("bob's login with the password he set: %v", err)
	}
	// The Login call of conjur-api-go still returns the key itself for an API key.
	if got, err := c.Login("alice", string(key)); err != nil || string(got) != string(key) {
		t.Errorf("Login with the API key: %q %v, want the key back", got, err)
	}
}
