package client_test

import (
	"testing"
	"time"

	"github.com/sowerproject/sower/authn/client"
)

// FuzzParseToken: whatever the server (or something in front of it)
// answers, ParseToken returns a token with exp after iat or an error, and
// never panics.
func FuzzParseToken(f *testing.F) {
	f.Add(conjurToken("host/app", time.Unix(1_800_000_000, 0), 8*time.Minute))
	f.Add([]byte(`{"protected":"e30=","payload":"eyJzdWIiOiJ4IiwiaWF0IjoxLCJleHAiOjJ9","signature":"c2ln"}`))
	f.Add([]byte(`<html>502 Bad Gateway</html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := client.ParseToken(body)
		if err != nil {
			return
		}
		if !tok.ExpiresAt.After(tok.IssuedAt) || string(tok.JSON) != string(body) {
			t.Fatalf("ParseToken(%q) = %+v", body, tok)
		}
	})
}
