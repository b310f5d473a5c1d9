package apikey_test

import (
	"context"
	"testing"

	"github.com/sowerproject/sower/authn/apikey"
)

// A prepared credential, once written through the Store by the caller,
// verifies the key Prepare returned, and Prepare itself writes nothing.
func TestPrepareWritesNothingAndVerifiesOnceStored(t *testing.T) {
	ctx := context.Background()
	store := apikey.NewMemStore()
	m, err := apikey.New(apikey.Config{Store: store, Pepper: make([]byte, apikey.PepperBytes)})
	if err != nil {
		t.Fatal(err)
	}
	const role = "acme:host:app"
	key, cred, err := m.Prepare(role)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != apikey.KeyLen || cred.RoleID != role || len(cred.APIKeyHash) == 0 {
		t.Fatalf("Prepare = %q, %+v", key, cred)
	}
	if err := m.Verify(ctx, role, key); err == nil {
		t.Fatal("Verify succeeded before the credential was stored: Prepare wrote it")
	}
	if err := store.UpdateCredential(ctx, role, func(c *apikey.Credential) error { *c = *cred; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(ctx, role, key); err != nil {
		t.Fatalf("Verify after storing the prepared credential: %v", err)
	}
	if err := m.Verify(ctx, "acme:host:other", key); err == nil {
		t.Fatal("the key verified for another role")
	}
	if _, _, err := m.Prepare(""); err == nil {
		t.Fatal("Prepare accepted an empty role id")
	}
}
