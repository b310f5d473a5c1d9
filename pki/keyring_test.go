package pki_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
)

func mustKeyring(t testing.TB) *pki.Keyring {
	t.Helper()
	k, err := pki.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	const path = "/sower/authn/signing-key"
	secret := []byte("token signing key material")
	k := mustKeyring(t)
	sealed, err := k.Seal(path, secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("plaintext visible in the sealed value")
	}
	if len(sealed) != len(secret)+pki.SealOverhead {
		t.Fatalf("sealed length %d, want %d", len(sealed), len(secret)+pki.SealOverhead)
	}
	if v, err := pki.SealedKeyVersion(sealed); err != nil || v != 1 {
		t.Fatalf("version %d, %v; want 1", v, err)
	}
	got, err := k.Open(path, sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := k.Seal(path, secret)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are identical: nonce reused")
	}

	other := mustKeyring(t) // same version number 1, different key
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	relabelled := bytes.Clone(sealed)
	relabelled[5] = 2 // claims version 2
	rotated := mustKeyring(t)
	rotated.Rotate()
	fromV2, _ := rotated.Seal(path, secret)

	tests := map[string]struct {
		keyring  *pki.Keyring
		path     string
		sealed   []byte
		sentinel error
		says     string
	}{
		"moved to another key path": {k, "/sower/authn/other-key", sealed, pki.ErrOpen, "another key path"},
		"wrong data key":            {other, path, sealed, pki.ErrWrongDataKey, "different data key"},
		"tampered":                  {k, path, flipped, pki.ErrOpen, "modified"},
		"unknown version":           {k, path, relabelled, pki.ErrUnknownKeyVersion, "version 2"},
		"version this node lacks":   {k, path, fromV2, pki.ErrUnknownKeyVersion, "copy the current data key"},
		"truncated":                 {k, path, sealed[:20], pki.ErrMalformedSealed, "not a sealed value"},
		"plaintext":                 {k, path, secret, pki.ErrMalformedSealed, "not a sealed value"},
		"empty":                     {k, path, nil, pki.ErrMalformedSealed, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.keyring.Open(tc.path, tc.sealed)
			if got != nil {
				t.Fatalf("Open returned bytes %q with error %v", got, err)
			}
			wantErr(t, "open", err, tc.sentinel, tc.says)
			if strings.Contains(err.Error(), string(secret)) {
				t.Fatal("error leaks the plaintext")
			}
		})
	}

	if _, err := k.Seal("", secret); err == nil {
		t.Fatal("Seal without a key path succeeded")
	}
}

func TestKeyringRotateRetireMerge(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t)
	old, _ := k.Seal("/a", []byte("old"))
	beforeRotation := k.Marshal()
	v, err := k.Rotate()
	if err != nil || v != 2 || k.Primary() != 2 {
		t.Fatalf("Rotate = %d, %v; primary %d", v, err, k.Primary())
	}
	fresh, _ := k.Seal("/a", []byte("new"))
	if got, _ := pki.SealedKeyVersion(fresh); got != 2 {
		t.Fatalf("new seal under version %d, want 2", got)
	}
	if got, err := k.Open("/a", old); err != nil || string(got) != "old" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	if err := k.Retire(2); err == nil {
		t.Fatal("retired the primary")
	}
	if err := k.Retire(7); err == nil {
		t.Fatal("retired a version not held")
	}

	// Another node learns version 2 by merging.
	standby, err := pki.ParseKeyring(beforeRotation)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standby.Open("/a", fresh); !errors.Is(err, pki.ErrUnknownKeyVersion) {
		t.Fatalf("standby before merge: %v", err)
	}
	if err := standby.Merge(k); err != nil {
		t.Fatal(err)
	}
	if got, err := standby.Open("/a", fresh); err != nil || string(got) != "new" {
		t.Fatalf("merged keyring: %q, %v", got, err)
	}
	if err := standby.Merge(mustKeyring(t)); !errors.Is(err, pki.ErrWrongDataKey) {
		t.Fatalf("merging another cluster's keyring: %v, want ErrWrongDataKey", err)
	}

	if err := k.Retire(1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open("/a", old); !errors.Is(err, pki.ErrUnknownKeyVersion) {
		t.Fatalf("after retiring version 1: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(k.Marshal())), "\n")
	_, secretB64, _ := strings.Cut(lines[len(lines)-1], " ")
	if got := fmt.Sprintf("%v %+v %#v %s", k, k, k, k); strings.Contains(got, secretB64) || !strings.Contains(got, "versions: [2]") {
		t.Fatalf("keyring formats as %q", got)
	}
}

func TestKeyringFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "data.key")
	k := mustKeyring(t)
	if err := k.CreateFile(path); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", info.Mode(), err)
	}
	if err := mustKeyring(t).CreateFile(path); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("CreateFile over an existing key: %v", err)
	}
	loaded, err := pki.LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := k.Seal("/x", []byte("v"))
	if _, err := loaded.Open("/x", sealed); err != nil {
		t.Fatalf("loaded keyring cannot open: %v", err)
	}

	k.Rotate()
	if err := k.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if loaded, err = pki.LoadKeyring(path); err != nil || loaded.Primary() != 2 {
		t.Fatalf("after WriteFile: primary %v, %v", loaded, err)
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := pki.LoadKeyring(path)
		wantErr(t, fmt.Sprintf("mode %#o", mode), err, pki.ErrKeyFilePermissions, "chmod 600 "+path)
	}
	os.Chmod(path, 0o600)
	if _, err := pki.LoadKeyring(filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("loaded a missing file")
	}
	if _, err := pki.LoadKeyring(dir); err == nil {
		t.Fatal("loaded a directory")
	}
	os.Chmod(path, 0o600)
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	key := strings.Repeat("A", 43) + "="
	tests := map[string]struct {
		in   string
		ok   bool
		says string
	}{
		"valid":            {in: "sower-data-keyring v1\n1 " + key + "\n", ok: true},
		"comments":         {in: "# c\n\nsower-data-keyring v1\n# c\n3 " + key + "\n", ok: true},
		"no header":        {in: "1 " + key + "\n", says: "header"},
		"no key":           {in: "sower-data-keyring v1\n", says: "no key"},
		"version zero":     {in: "sower-data-keyring v1\n0 " + key + "\n", says: "line 2"},
		"version text":     {in: "sower-data-keyring v1\nx " + key + "\n", says: "positive number"},
		"duplicate":        {in: "sower-data-keyring v1\n1 " + key + "\n1 " + key + "\n", says: "twice"},
		"short key":        {in: "sower-data-keyring v1\n1 AAAA\n", says: "want 32"},
		"bad base64":       {in: "sower-data-keyring v1\n1 !!!!\n", says: "base64"},
		"missing key part": {in: "sower-data-keyring v1\n1\n", says: "line 2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := pki.ParseKeyring([]byte(tc.in))
			if tc.ok {
				wantErr(t, "parse", err, nil)
				return
			}
			wantErr(t, "parse", err, pki.ErrMalformedKeyring, tc.says)
			if strings.Contains(err.Error(), key) {
				t.Fatal("error leaks key material")
			}
		})
	}
}

func TestRewrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := mustKeyring(t)
	store := pkitest.NewMemStore()
	keys := []string{"/sower/pki/ca", "/sower/authn/key", "/sower/secrets/db", "/sower/gone"}
	for _, key := range keys[:3] {
		v, _ := k.Seal(key, []byte("value of "+key))
		store.Put(ctx, key, v)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	// A writer seals /sower/secrets/db under the new key between Rewrap's
	// read and its swap: the write must survive.
	store.BeforeSwap = func(key string) {
		if key == "/sower/secrets/db" {
			store.BeforeSwap = nil
			v, _ := k.Seal(key, []byte("written during rewrap"))
			store.Put(ctx, key, v)
		}
	}
	res, err := pki.Rewrap(ctx, store, k, keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := (pki.RewrapResult{Rewrapped: 2, Current: 1, Missing: 1}); res != want {
		t.Fatalf("Rewrap = %+v, want %+v", res, want)
	}
	if err := k.Retire(1); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"/sower/pki/ca":     "value of /sower/pki/ca",
		"/sower/authn/key":  "value of /sower/authn/key",
		"/sower/secrets/db": "written during rewrap",
	} {
		v, _ := store.Get(ctx, key)
		got, err := k.Open(key, v)
		if err != nil || string(got) != want {
			t.Fatalf("%s after rewrap and retire: %q, %v", key, got, err)
		}
	}
	res, err = pki.Rewrap(ctx, store, k, keys)
	if err != nil || res.Rewrapped != 0 || res.Current != 3 {
		t.Fatalf("second pass: %+v, %v", res, err)
	}

	store.Put(ctx, "/plain", []byte("not sealed at all"))
	if _, err := pki.Rewrap(ctx, store, k, []string{"/plain"}); !errors.Is(err, pki.ErrMalformedSealed) {
		t.Fatalf("rewrap of a plain value: %v", err)
	}
	store.FailNext(errors.New("etcd: no leader"))
	if _, err := pki.Rewrap(ctx, store, k, keys); err == nil || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("store failure: %v", err)
	}
}
