package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/internal/sealtest"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

var keyForm = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{56}$`)

// decode reverses Generate, to show that the text carries all 256 bits.
func decode(t *testing.T, key string) []byte {
	t.Helper()
	var out []byte
	for w := 0; w < 8; w++ {
		var v uint64
		for _, c := range key[w*7 : w*7+7] {
			i := bytes.IndexRune([]byte(crockford), c)
			if i < 0 {
				t.Fatalf("key %q has %q outside Crockford base32", key, c)
			}
			v = v<<5 | uint64(i)
		}
		if v > 0xffffffff {
			t.Fatalf("word %d of %q overflows 32 bits", w, key)
		}
		out = append(out, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return out
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		random []byte
		want   string
	}{
		"zeros":     {random: make([]byte, 32), want: "00000000000000000000000000000000000000000000000000000000"},
		"all ones":  {random: bytes.Repeat([]byte{0xff}, 32), want: "3zzzzzz3zzzzzz3zzzzzz3zzzzzz3zzzzzz3zzzzzz3zzzzzz3zzzzzz"},
		"one word":  {random: append([]byte{0, 0, 0, 31}, make([]byte, 28)...), want: "000000z" + "0000000000000000000000000000000000000000000000000"},
		"crockford": {random: append([]byte{0x00, 0x00, 0x80, 0x00}, make([]byte, 28)...), want: "0001000" + "0000000000000000000000000000000000000000000000000"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := apikey.Generate(bytes.NewReader(tc.random))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Generate = %q, want %q", got, tc.want)
			}
			if !bytes.Equal(decode(t, got), tc.random) {
				t.Fatal("key does not decode to its random bytes")
			}
		})
	}

	seen := map[string]bool{}
	for range 200 {
		k, err := apikey.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !keyForm.MatchString(k) || len(k) != apikey.KeyLen {
			t.Fatalf("key %q is not 56 lower-case Crockford digits", k)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
		decode(t, k)
	}

	if _, err := apikey.Generate(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatal("Generate with short randomness succeeded")
	}
}

type failingStore struct{ apikey.Store }

var errEtcd = errors.New("etcd: request timed out")

func (failingStore) Credential(context.Context, string) (*apikey.Credential, error) {
	return nil, errEtcd
}

func newManager(t *testing.T, store apikey.Store) *apikey.Manager {
	t.Helper()
	pepper, err := apikey.NewPepper(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := apikey.New(apikey.Config{Store: store, Pepper: pepper})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := apikey.NewMemStore()
	m := newManager(t, store)
	alice, err := m.Rotate(ctx, "org:user:alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := m.Rotate(ctx, "org:user:bob")
	if err != nil {
		t.Fatal(err)
	}
	carolOld, _ := m.Rotate(ctx, "org:user:carol")
	carol, _ := m.Rotate(ctx, "org:user:carol")

	// A record copied from bob to alice's slot must not log alice in with bob's key.
	bobRec, _ := store.Credential(ctx, "org:user:bob")
	_ = store.UpdateCredential(ctx, "org:user:mallory", func(c *apikey.Credential) error {
		*c = *bobRec
		c.RoleID = "org:user:mallory"
		return nil
	})
	_ = store.UpdateCredential(ctx, "org:user:oldscheme", func(c *apikey.Credential) error {
		*c = *bobRec
		c.RoleID = "org:user:oldscheme"
		c.Scheme = "md5"
		return nil
	})

	tests := map[string]struct {
		store  apikey.Store
		role   string
		key    string
		reason authn.Reason // "" = success
		other  error        // a non-refusal error
	}{
		"right key":                  {role: "org:user:alice", key: alice},
		"second role":                {role: "org:user:bob", key: bob},
		"wrong key":                  {role: "org:user:alice", key: bob, reason: authn.ReasonBadCredentials},
		"empty key":                  {role: "org:user:alice", key: "", reason: authn.ReasonBadCredentials},
		"key with one char changed":  {role: "org:user:alice", key: alice[:55] + string(rune(alice[55]^1)), reason: authn.ReasonBadCredentials},
		"unknown role":               {role: "org:user:nobody", key: alice, reason: authn.ReasonUnknownIdentity},
		"old key after rotation":     {role: "org:user:carol", key: carolOld, reason: authn.ReasonBadCredentials},
		"new key after rotation":     {role: "org:user:carol", key: carol},
		"hash copied to other role":  {role: "org:user:mallory", key: bob, reason: authn.ReasonBadCredentials},
		"unknown hash scheme":        {role: "org:user:oldscheme", key: bob, reason: authn.ReasonBadCredentials},
		"store failure is not a 401": {store: failingStore{}, role: "org:user:alice", key: alice, other: errEtcd},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mm := m
			if tc.store != nil {
				mm = newManager(t, tc.store)
			}
			err := mm.Verify(ctx, tc.role, tc.key)
			switch {
			case tc.other != nil:
				if !errors.Is(err, tc.other) || errors.Is(err, authn.ErrUnauthenticated) {
					t.Fatalf("Verify = %v, want %v and not a refusal", err, tc.other)
				}
			case tc.reason == "":
				if err != nil {
					t.Fatalf("Verify = %v (%s)", err, reasonString(err))
				}
			default:
				if !errors.Is(err, authn.ErrUnauthenticated) || !authn.IsReason(err, tc.reason) {
					t.Fatalf("Verify = %v (%s), want refusal %s", err, reasonString(err), tc.reason)
				}
				if err.Error() != authn.ErrUnauthenticated.Error() {
					t.Fatalf("refusal message %q is not generic", err.Error())
				}
			}
		})
	}
}

func reasonString(err error) string {
	r, d := authn.ReasonOf(err)
	return string(r) + ": " + d
}

func TestStoredRecordHoldsNoKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := apikey.NewMemStore()
	m := newManager(t, store)
	key, _ := m.Rotate(ctx, "org:host:app")
	c, err := store.Credential(ctx, "org:host:app")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c.APIKeyHash, []byte(key)) || len(c.APIKeyHash) != 32 || c.Scheme != apikey.SchemeHMACSHA256 {
		t.Fatalf("stored record %+v", c)
	}
	// Another pepper (another cluster) does not accept the key.
	other := newManager(t, store)
	if err := other.Verify(ctx, "org:host:app", key); !authn.IsReason(err, authn.ReasonBadCredentials) {
		t.Fatalf("Verify under another pepper = %v", err)
	}
}

func TestLoginAndPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newManager(t, apikey.NewMemStore())
	key, _ := m.Rotate(ctx, "org:user:alice")
	const pw = "Correct-Horse-42"
	if err := m.SetPassword(ctx, "org:user:alice", pw); err != nil {
		t.Fatal(err)
	}
	// Setting the password keeps the API key, and rotating keeps the password.
	if err := m.Verify(ctx, "org:user:alice", key); err != nil {
		t.Fatalf("API key stopped working after SetPassword: %v", err)
	}
	key2, _ := m.Rotate(ctx, "org:user:alice")

	tests := map[string]struct {
		secret string
		method apikey.Method
		reason authn.Reason
	}{
		"api key":       {secret: key2, method: apikey.MethodAPIKey},
		"password":      {secret: pw, method: apikey.MethodPassword},
		"rotated key":   {secret: key, reason: authn.ReasonBadCredentials},
		"wrong":         {secret: "Correct-Horse-43", reason: authn.ReasonBadCredentials},
		"long password": {secret: pw + string(bytes.Repeat([]byte("x"), 80)), reason: authn.ReasonBadCredentials},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := m.Login(ctx, "org:user:alice", tc.secret)
			if tc.reason != "" {
				if !authn.IsReason(err, tc.reason) {
					t.Fatalf("Login = %v (%s), want %s", err, reasonString(err), tc.reason)
				}
				return
			}
			if err != nil || got != tc.method {
				t.Fatalf("Login = %q, %v; want %q", got, err, tc.method)
			}
		})
	}
	if _, err := m.Login(ctx, "org:user:nobody", pw); !authn.IsReason(err, authn.ReasonUnknownIdentity) {
		t.Fatalf("Login unknown = %v", err)
	}
}

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		pw string
		ok bool
	}{
		"good":          {pw: "Correct-Horse-42", ok: true},
		"too short":     {pw: "Co-Ho-42", ok: false},
		"one upper":     {pw: "Correct-horse-42", ok: false},
		"no digit":      {pw: "Correct-Horse-xx", ok: false},
		"no special":    {pw: "CorrectHorse42x", ok: false},
		"too long":      {pw: "AB-1" + string(bytes.Repeat([]byte("a"), 125)), ok: false},
		"max length":    {pw: "AB-1" + string(bytes.Repeat([]byte("a"), 124)), ok: true},
		"unicode count": {pw: "ÄÖ-1ééééééééé", ok: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := apikey.ValidatePassword(tc.pw)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidatePassword(%q) = %v, want ok=%v", tc.pw, err, tc.ok)
			}
		})
	}
}

func TestNewAndPepper(t *testing.T) {
	t.Parallel()
	if _, err := apikey.New(apikey.Config{Pepper: make([]byte, 32)}); !errors.Is(err, apikey.ErrStoreRequired) {
		t.Fatalf("New without store = %v", err)
	}
	if _, err := apikey.New(apikey.Config{Store: apikey.NewMemStore(), Pepper: make([]byte, 31)}); !errors.Is(err, apikey.ErrPepperTooShort) {
		t.Fatalf("New with short pepper = %v", err)
	}
	s := sealtest.New()
	p, _ := apikey.NewPepper(nil)
	sealed, err := apikey.SealPepper(s, p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, p) {
		t.Fatal("sealed pepper contains the pepper")
	}
	got, err := apikey.OpenPepper(s, sealed)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("OpenPepper = %x, %v", got, err)
	}
	if _, err := apikey.OpenPepper(sealtest.New(), sealed); err == nil {
		t.Fatal("OpenPepper under another data key succeeded")
	}
}

func TestRotatedTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pepper, _ := apikey.NewPepper(nil)
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	store := apikey.NewMemStore()
	m, _ := apikey.New(apikey.Config{Store: store, Pepper: pepper}, apikey.WithClock(func() time.Time { return at }))
	if _, err := m.Rotate(ctx, "org:host:a"); err != nil {
		t.Fatal(err)
	}
	c, _ := store.Credential(ctx, "org:host:a")
	if !c.Rotated.Equal(at) {
		t.Fatalf("Rotated = %s, want %s", c.Rotated, at)
	}
	if err := m.SetAPIKey(ctx, "org:host:a", "short"); err == nil {
		t.Fatal("SetAPIKey accepted a short key")
	}
	imported := "3ahcddy39rcxzh3ggac4cwk3j2r8pqwdg33059y835ys2rh2kywa"
	if err := m.SetAPIKey(ctx, "org:host:a", imported); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(ctx, "org:host:a", imported); err != nil {
		t.Fatalf("imported key: %v", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	pepper, _ := apikey.NewPepper(nil)
	m, _ := apikey.New(apikey.Config{Store: apikey.NewMemStore(), Pepper: pepper})
	key, _ := m.Rotate(ctx, "org:host:app")
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Verify(ctx, "org:host:app", key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.Generate(nil); err != nil {
			b.Fatal(err)
		}
	}
}
