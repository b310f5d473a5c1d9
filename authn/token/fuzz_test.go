package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/internal/sealtest"
)

// FuzzVerify feeds arbitrary bytes to the access-token parser and verifier.
// Nothing may panic, every failure must be a refusal, and nothing but a token
// the ring signed may verify.
func FuzzVerify(f *testing.F) {
	store, sealer := NewMemKeyStore(), sealtest.New()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	svc, err := New(Config{Keys: store, Sealer: sealer}, WithClock(func() time.Time { return now }))
	if err != nil {
		f.Fatal(err)
	}
	if err := svc.EnsureKey(context.Background()); err != nil {
		f.Fatal(err)
	}
	tok, _ := svc.Issue("host/app")
	f.Add(tok.JSON)
	f.Add([]byte(`{"protected":"eyJhbGciOiJjb25qdXIub3JnL3Nsb3NpbG8vdjIiLCJraWQiOiI5M2VjNTEwODRmZTM3Zjc3M2I1ODhlNTYyYWVjZGMxMSJ9","payload":"eyJzdWIiOiJhZG1pbiIsImlhdCI6MTUxMDc1MzI1OX0=","signature":"raCufKOf7sKzciZInQTphu1mBbLhAdIJM72ChLB4m5wKWxFnNz"}`))
	f.Add([]byte(`{"protected":"","payload":"","signature":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := svc.Verify(context.Background(), raw)
		if err != nil {
			if _, ok := err.(*authn.Refusal); !ok {
				t.Fatalf("Verify error %v (%T) is not a refusal", err, err)
			}
			return
		}
		// Only a signed payload verifies: the subject must be the one we signed,
		// whatever JSON or base64 variation carried it.
		if c.Subject != "host/app" || c.KeyID != tok.Claims.KeyID {
			t.Fatalf("forged token verified: %+v from %q", c, raw)
		}
	})
}

// FuzzParseAuthorization checks the header parser never panics, fails only
// with refusals, and round-trips what it accepts.
func FuzzParseAuthorization(f *testing.F) {
	tok := []byte(`{"protected":"a","payload":"b","signature":"c"}`)
	f.Add(`Token token="` + base64.StdEncoding.EncodeToString(tok) + `"`)
	f.Add(`Token token=` + base64.RawURLEncoding.EncodeToString(tok))
	f.Add(`Bearer abc`)
	f.Add(`Token token="`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, h string) {
		raw, err := ParseAuthorization(h)
		if err != nil {
			if _, ok := err.(*authn.Refusal); !ok {
				t.Fatalf("error %v (%T) is not a refusal", err, err)
			}
			return
		}
		again, err := ParseAuthorization(`Token token="` + base64.StdEncoding.EncodeToString(raw) + `"`)
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("round trip of %q: %q, %v", raw, again, err)
		}
	})
}
