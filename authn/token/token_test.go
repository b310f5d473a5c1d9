package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	conjurauthn "github.com/cyberark/conjur-api-go/conjurapi/authn"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/internal/sealtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type fixture struct {
	store  *MemKeyStore
	sealer *sealtest.Sealer
	clock  *clock
	svc    *Service
}

func newFixture(t testing.TB, alg Algorithm) *fixture {
	t.Helper()
	f := &fixture{store: NewMemKeyStore(), sealer: sealtest.New(), clock: &clock{t: t0}}
	f.svc = f.node(t, alg)
	if err := f.svc.EnsureKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

// node returns another node's Service on the same store and data key.
func (f *fixture) node(t testing.TB, alg Algorithm) *Service {
	t.Helper()
	s, err := New(Config{Keys: f.store, Sealer: f.sealer, Algorithm: alg}, WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustIssue(t testing.TB, s *Service, sub string) *Token {
	t.Helper()
	tok, err := s.Issue(sub)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestIssueVerify(t *testing.T) {
	t.Parallel()
	for _, alg := range []Algorithm{EdDSA, ES256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, alg)
			tok := mustIssue(t, f.svc, "host/conjur/authn-k8s/prod/apps/ns/deployment/web")
			c, err := f.svc.Verify(context.Background(), tok.JSON)
			if err != nil {
				t.Fatalf("Verify: %v (%s)", err, detail(err))
			}
			want := Claims{Subject: "host/conjur/authn-k8s/prod/apps/ns/deployment/web", IssuedAt: t0, Expires: t0.Add(8 * time.Minute), KeyID: f.svc.KeyIDs()[0]}
			if !c.IssuedAt.Equal(want.IssuedAt) || !c.Expires.Equal(want.Expires) || c.Subject != want.Subject || c.KeyID != want.KeyID {
				t.Fatalf("claims = %+v, want %+v", c, want)
			}
			if !reflect.DeepEqual(c, tok.Claims) && !(c.IssuedAt.Equal(tok.Claims.IssuedAt) && c.Expires.Equal(tok.Claims.Expires)) {
				t.Fatalf("verified claims %+v differ from issued %+v", c, tok.Claims)
			}

			var ser map[string]string
			if err := json.Unmarshal(tok.JSON, &ser); err != nil || len(ser) != 3 {
				t.Fatalf("token JSON %s: %v", tok.JSON, err)
			}
			hdr, _ := base64.StdEncoding.DecodeString(ser["protected"])
			var h map[string]string
			if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != string(alg) || h["kid"] != c.KeyID || h["typ"] != "JWT" {
				t.Fatalf("protected header %s", hdr)
			}
			pl, err := base64.StdEncoding.DecodeString(ser["payload"])
			if err != nil {
				t.Fatalf("payload is not standard base64: %v", err)
			}
			if got, want := string(pl), fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, c.Subject, t0.Unix(), t0.Add(8*time.Minute).Unix()); got != want {
				t.Fatalf("payload = %s, want %s", got, want)
			}
		})
	}
}

func detail(err error) string {
	r, d := authn.ReasonOf(err)
	return string(r) + ": " + d
}

// TestConjurAPIGoParsesTokens parses issued tokens with conjur-api-go's own
// parser, and checks that its refresh logic reads iat and exp as we wrote them.
func TestConjurAPIGoParsesTokens(t *testing.T) {
	t.Parallel()
	store, sealer := NewMemKeyStore(), sealtest.New()
	// conjur-api-go's ShouldRefresh uses the real clock, so this node does too.
	svc, err := New(Config{Keys: store, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.EnsureKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Subjects whose JSON encodes to base64 with '+' and '/' (which a
	// base64url payload would turn into '-' and '_', breaking conjur-api-go).
	subjects := []string{"admin", "host/app", "host/conjur/authn-k8s/prod/apps/ns/*/*", "user/ü?>>~~~", strings.Repeat("?~", 50)}
	for _, sub := range subjects {
		tok := mustIssue(t, svc, sub)
		ct, err := conjurauthn.NewToken(tok.JSON)
		if err != nil {
			t.Fatalf("conjur-api-go refuses the token for %q: %v\n%s", sub, err, tok.JSON)
		}
		if ct.ShouldRefresh() {
			t.Fatalf("conjur-api-go wants to refresh a fresh token for %q", sub)
		}
		// The header conjur-api-go sends is read back by ParseAuthorization.
		h := fmt.Sprintf("Token token=\"%s\"", base64.StdEncoding.EncodeToString(ct.Raw()))
		raw, err := ParseAuthorization(h)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := svc.Verify(context.Background(), raw); err != nil || c.Subject != sub {
			t.Fatalf("Verify(conjur-api-go header) = %+v, %v", c, err)
		}
		if h != tok.AuthorizationHeader() {
			t.Fatalf("AuthorizationHeader() = %q, conjur-api-go sends %q", tok.AuthorizationHeader(), h)
		}
	}

	// A token issued 7 minutes ago is past 85% of its 8 minutes: conjur-api-go refreshes it.
	old, err := New(Config{Keys: store, Sealer: sealer}, WithClock(func() time.Time { return time.Now().Add(-7 * time.Minute) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ct, err := conjurauthn.NewToken(mustIssue(t, old, "admin").JSON)
	if err != nil {
		t.Fatal(err)
	}
	if !ct.ShouldRefresh() {
		t.Fatal("conjur-api-go does not refresh a token 7 of 8 minutes old: it did not read iat/exp")
	}
}

// forge signs an arbitrary header and payload with the fixture's current key.
func (f *fixture) forge(t *testing.T, hdr, pl string, enc *base64.Encoding) []byte {
	t.Helper()
	k := f.svc.ring.Load().current
	ph, pp := enc.EncodeToString([]byte(hdr)), enc.EncodeToString([]byte(pl))
	sig, err := k.sign([]byte(ph + "." + pp))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(serialized{Protected: ph, Payload: pp, Signature: base64.RawURLEncoding.EncodeToString(sig)})
	return b
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, EdDSA)
	ctx := context.Background()
	kid := f.svc.KeyIDs()[0]
	goodHdr := fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"typ":"JWT"}`, kid)
	iat := t0.Unix()
	pl := func(sub string, iat, exp int64) string {
		return fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, sub, iat, exp)
	}
	valid := mustIssue(t, f.svc, "admin")
	var ser serialized
	_ = json.Unmarshal(valid.JSON, &ser)
	otherPayload := base64.StdEncoding.EncodeToString([]byte(pl("admin", iat, iat+3000)))

	other := newFixture(t, EdDSA) // another cluster
	foreign := mustIssue(t, other.svc, "admin")

	tests := map[string]struct {
		raw    []byte
		reason authn.Reason // "" = accepted
	}{
		"issued token":                   {raw: valid.JSON},
		"with surrounding space":         {raw: append([]byte("  \n"), valid.JSON...)},
		"forged standard padded":         {raw: f.forge(t, goodHdr, pl("admin", iat, iat+480), base64.StdEncoding)},
		"forged base64url unpadded":      {raw: f.forge(t, goodHdr, pl("admin", iat, iat+480), base64.RawURLEncoding)},
		"forged base64url padded":        {raw: f.forge(t, goodHdr, pl("admin", iat, iat+480), base64.URLEncoding)},
		"float times":                    {raw: f.forge(t, goodHdr, fmt.Sprintf(`{"sub":"a","iat":%d.0,"exp":%d}`, iat, iat+60), base64.StdEncoding)},
		"expired":                        {raw: f.forge(t, goodHdr, pl("admin", iat-600, iat-31), base64.StdEncoding), reason: authn.ReasonExpired},
		"expired within leeway":          {raw: f.forge(t, goodHdr, pl("admin", iat-600, iat-29), base64.StdEncoding)},
		"issued in the future":           {raw: f.forge(t, goodHdr, pl("admin", iat+31, iat+480), base64.StdEncoding), reason: authn.ReasonNotYetValid},
		"issued in the future in leeway": {raw: f.forge(t, goodHdr, pl("admin", iat+29, iat+480), base64.StdEncoding)},
		"lifetime over MaxTTL":           {raw: f.forge(t, goodHdr, pl("admin", iat, iat+3601), base64.StdEncoding), reason: authn.ReasonLifetime},
		"exp before iat":                 {raw: f.forge(t, goodHdr, pl("admin", iat, iat-1), base64.StdEncoding), reason: authn.ReasonMalformed},
		"no exp (Conjur 4 style)":        {raw: f.forge(t, goodHdr, fmt.Sprintf(`{"sub":"admin","iat":%d}`, iat), base64.StdEncoding), reason: authn.ReasonMissingClaim},
		"no sub":                         {raw: f.forge(t, goodHdr, fmt.Sprintf(`{"iat":%d,"exp":%d}`, iat, iat+60), base64.StdEncoding), reason: authn.ReasonMissingClaim},
		"string iat":                     {raw: f.forge(t, goodHdr, fmt.Sprintf(`{"sub":"a","iat":"%d","exp":%d}`, iat, iat+60), base64.StdEncoding), reason: authn.ReasonMissingClaim},
		"fractional exp":                 {raw: f.forge(t, goodHdr, fmt.Sprintf(`{"sub":"a","iat":%d,"exp":%d.5}`, iat, iat+60), base64.StdEncoding), reason: authn.ReasonMissingClaim},
		"payload not JSON":               {raw: f.forge(t, goodHdr, `not json`, base64.StdEncoding), reason: authn.ReasonMalformed},
		"tampered payload":               {raw: []byte(fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, ser.Protected, otherPayload, ser.Signature)), reason: authn.ReasonSignature},
		"truncated signature":            {raw: []byte(fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, ser.Protected, ser.Payload, ser.Signature[:20])), reason: authn.ReasonSignature},
		"other cluster's key":            {raw: foreign.JSON, reason: authn.ReasonUnknownKey},
		"alg none":                       {raw: []byte(fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":"AA"}`, b64(`{"alg":"none","kid":"`+kid+`"}`), ser.Payload)), reason: authn.ReasonAlgorithm},
		"alg HS256":                      {raw: f.forge(t, fmt.Sprintf(`{"alg":"HS256","kid":%q}`, kid), pl("admin", iat, iat+60), base64.StdEncoding), reason: authn.ReasonAlgorithm},
		"alg ES256 with EdDSA key":       {raw: f.forge(t, fmt.Sprintf(`{"alg":"ES256","kid":%q}`, kid), pl("admin", iat, iat+60), base64.StdEncoding), reason: authn.ReasonAlgorithm},
		"no kid":                         {raw: f.forge(t, `{"alg":"EdDSA"}`, pl("admin", iat, iat+60), base64.StdEncoding), reason: authn.ReasonUnknownKey},
		"empty":                          {raw: nil, reason: authn.ReasonMissing},
		"not JSON":                       {raw: []byte(base64.StdEncoding.EncodeToString(valid.JSON)), reason: authn.ReasonMalformed},
		"JSON array":                     {raw: []byte(`[1,2]`), reason: authn.ReasonMalformed},
		"broken JSON":                    {raw: []byte(`{"protected":`), reason: authn.ReasonMalformed},
		"missing signature":              {raw: []byte(fmt.Sprintf(`{"protected":%q,"payload":%q}`, ser.Protected, ser.Payload)), reason: authn.ReasonMalformed},
		"fields of wrong type":           {raw: []byte(`{"protected":1,"payload":2,"signature":3}`), reason: authn.ReasonMalformed},
		"header not base64":              {raw: []byte(fmt.Sprintf(`{"protected":"***","payload":%q,"signature":%q}`, ser.Payload, ser.Signature)), reason: authn.ReasonMalformed},
		"header not JSON":                {raw: []byte(fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, b64("hello"), ser.Payload, ser.Signature)), reason: authn.ReasonMalformed},
		"signature not base64":           {raw: []byte(fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":"***"}`, ser.Protected, ser.Payload)), reason: authn.ReasonMalformed},
		"too large":                      {raw: []byte(`{"protected":"` + strings.Repeat("A", MaxTokenSize) + `"}`), reason: authn.ReasonMalformed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := f.svc.Verify(ctx, tc.raw)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify = %v (%s)", err, detail(err))
				}
				if c.KeyID != kid {
					t.Fatalf("KeyID = %q, want %q", c.KeyID, kid)
				}
				return
			}
			if !errors.Is(err, authn.ErrUnauthenticated) || !authn.IsReason(err, tc.reason) {
				t.Fatalf("Verify = %v (%s), want refusal %s", err, detail(err), tc.reason)
			}
			if err.Error() != authn.ErrUnauthenticated.Error() {
				t.Fatalf("refusal text %q is not generic", err.Error())
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestExpiryWithClock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ES256)
	ctx := context.Background()
	tok := mustIssue(t, f.svc, "host/app")
	tests := map[string]struct {
		at     time.Duration
		reason authn.Reason
	}{
		"fresh":                {at: 0},
		"just before exp":      {at: 8*time.Minute - time.Second},
		"after exp in leeway":  {at: 8*time.Minute + 29*time.Second},
		"after exp and leeway": {at: 8*time.Minute + 30*time.Second, reason: authn.ReasonExpired},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := New(Config{Keys: f.store, Sealer: f.sealer}, WithClock(func() time.Time { return t0.Add(tc.at) }))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Load(ctx); err != nil {
				t.Fatal(err)
			}
			_, err = s.Verify(ctx, tok.JSON)
			if tc.reason == "" && err != nil || tc.reason != "" && !authn.IsReason(err, tc.reason) {
				t.Fatalf("Verify at +%s = %v (%s), want %q", tc.at, err, detail(err), tc.reason)
			}
		})
	}
}

func TestRotationAndPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, EdDSA)
	k1 := f.svc.KeyIDs()[0]
	tok1 := mustIssue(t, f.svc, "admin")

	f.clock.Advance(time.Hour)
	k2, err := f.svc.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k2 == k1 || f.svc.KeyIDs()[0] != k2 {
		t.Fatalf("after Rotate KeyIDs = %v, want %s first", f.svc.KeyIDs(), k2)
	}
	tok2 := mustIssue(t, f.svc, "admin")
	if tok2.Claims.KeyID != k2 {
		t.Fatalf("new token signed by %s, want %s", tok2.Claims.KeyID, k2)
	}

	// A node started before the rotation, with k1 only, has the new token's
	// key reloaded on demand.
	f.clock.Advance(-time.Hour)
	stale := f.node(t, EdDSA)
	_ = f.store.DeleteKey(ctx, k2) // hide k2 while the stale node loads
	if err := stale.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sk, _ := f.svc.ring.Load().byKID[k2].seal(f.sealer)
	_ = f.store.AddKey(ctx, sk)
	f.clock.Advance(time.Hour)
	if got := stale.KeyIDs(); len(got) != 1 || got[0] != k1 {
		t.Fatalf("stale node keys = %v", got)
	}
	if _, err := stale.Verify(ctx, tok2.JSON); err != nil {
		t.Fatalf("stale node refuses a token of the new key: %v (%s)", err, detail(err))
	}

	// The old token stays valid until it expires; expired it is refused for time.
	f.clock.Advance(-time.Hour + time.Minute)
	if _, err := f.svc.Verify(ctx, tok1.JSON); err != nil {
		t.Fatalf("old token after rotation: %v (%s)", err, detail(err))
	}
	f.clock.Advance(time.Hour - time.Minute)

	// Prune keeps k1 until MaxTTL + Leeway + Retention after k2 appeared.
	if gone, err := f.svc.Prune(ctx); err != nil || len(gone) != 0 {
		t.Fatalf("early Prune = %v, %v", gone, err)
	}
	f.clock.Advance(time.Hour + 30*time.Second + 10*time.Minute)
	gone, err := f.svc.Prune(ctx)
	if err != nil || len(gone) != 1 || gone[0] != k1 {
		t.Fatalf("Prune = %v, %v; want [%s]", gone, err, k1)
	}
	if got := f.svc.KeyIDs(); len(got) != 1 || got[0] != k2 {
		t.Fatalf("KeyIDs after prune = %v", got)
	}
	// A token of the pruned key is now from an unknown key.
	f.clock.t = t0
	if _, err := f.svc.Verify(ctx, tok1.JSON); !authn.IsReason(err, authn.ReasonUnknownKey) {
		t.Fatalf("token of pruned key: %v (%s)", err, detail(err))
	}
}

func TestReloadIsRateLimited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, EdDSA)
	other := newFixture(t, EdDSA)
	foreign := mustIssue(t, other.svc, "admin")

	before := f.store.Reads()
	for range 5 {
		if _, err := f.svc.Verify(ctx, foreign.JSON); !authn.IsReason(err, authn.ReasonUnknownKey) {
			t.Fatalf("Verify = %v", err)
		}
	}
	if got := f.store.Reads() - before; got != 1 {
		t.Fatalf("5 unknown kids within a second read the store %d times, want 1", got)
	}
	f.clock.Advance(time.Second)
	_, _ = f.svc.Verify(ctx, foreign.JSON)
	if got := f.store.Reads() - before; got != 2 {
		t.Fatalf("after the interval the store was read %d times, want 2", got)
	}

	f.clock.Advance(time.Second)
	f.store.FailNext(errors.New("etcd: no leader"))
	if _, err := f.svc.Verify(ctx, foreign.JSON); !authn.IsReason(err, authn.ReasonUnavailable) {
		t.Fatalf("Verify with failing store = %v (%s)", err, detail(err))
	}
	// Known keys keep verifying while the store is down.
	f.store.FailNext(errors.New("etcd: no leader"))
	if _, err := f.svc.Verify(ctx, mustIssue(t, f.svc, "a").JSON); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, EdDSA)
	kid := f.svc.KeyIDs()[0]

	// Another data key cannot open the ring.
	s, _ := New(Config{Keys: f.store, Sealer: sealtest.New()})
	if err := s.Load(ctx); err == nil || !strings.Contains(err.Error(), kid) {
		t.Fatalf("Load under another data key = %v", err)
	}
	if _, err := s.Issue("a"); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("Issue without keys = %v", err)
	}

	// A record moved to another key id does not open (the aad names the id).
	keys, _ := f.store.Keys(ctx)
	moved := NewMemKeyStore()
	_ = moved.AddKey(ctx, SealedKey{KID: "other", Sealed: keys[0].Sealed})
	s2, _ := New(Config{Keys: moved, Sealer: f.sealer})
	if err := s2.Load(ctx); err == nil {
		t.Fatal("Load of a moved record succeeded")
	}

	// A failing store is reported, and the loaded ring stays.
	f.store.FailNext(errors.New("etcd: timeout"))
	if err := f.svc.Load(ctx); err == nil {
		t.Fatal("Load with failing store succeeded")
	}
	if _, err := f.svc.Issue("a"); err != nil {
		t.Fatalf("Issue after failed Load: %v", err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		cfg  Config
		want error
	}{
		"no store":      {cfg: Config{Sealer: sealtest.New()}, want: ErrKeyStoreRequired},
		"no sealer":     {cfg: Config{Keys: NewMemKeyStore()}, want: ErrSealerRequired},
		"bad algorithm": {cfg: Config{Keys: NewMemKeyStore(), Sealer: sealtest.New(), Algorithm: "RS256"}, want: ErrAlgorithm},
		"ok":            {cfg: Config{Keys: NewMemKeyStore(), Sealer: sealtest.New(), TTL: time.Minute}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("New = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := New(Config{Keys: NewMemKeyStore(), Sealer: sealtest.New(), TTL: 2 * time.Hour, MaxTTL: time.Hour}); err == nil {
		t.Fatal("MaxTTL < TTL accepted")
	}
	s, _ := New(Config{Keys: NewMemKeyStore(), Sealer: sealtest.New(), TTL: 2 * time.Minute})
	if s.TTL() != 2*time.Minute {
		t.Fatalf("TTL = %s", s.TTL())
	}
	if _, err := s.Issue(""); !errors.Is(err, ErrEmptySubject) {
		t.Fatalf("Issue(\"\") = %v", err)
	}
}

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	tok := `{"protected":"a","payload":"b","signature":"c"}`
	std := base64.StdEncoding.EncodeToString([]byte(tok))
	url := base64.RawURLEncoding.EncodeToString([]byte(tok))
	tests := map[string]struct {
		h      string
		reason authn.Reason
	}{
		"conjur form":       {h: `Token token="` + std + `"`},
		"lower-case scheme": {h: `token token="` + std + `"`},
		"unquoted":          {h: `Token token=` + std},
		"base64url":         {h: `Token token="` + url + `"`},
		"extra spaces":      {h: `  Token   token = "` + std + `"  `},
		"empty":             {h: "", reason: authn.ReasonMissing},
		"bearer":            {h: "Bearer " + std, reason: authn.ReasonMalformed},
		"basic":             {h: "Basic YWRtaW46c2VjcmV0", reason: authn.ReasonMalformed},
		"scheme only":       {h: "Token", reason: authn.ReasonMalformed},
		"no token=":         {h: `Token value="` + std + `"`, reason: authn.ReasonMalformed},
		"empty value":       {h: `Token token=""`, reason: authn.ReasonMissing},
		"unbalanced quote":  {h: `Token token="` + std, reason: authn.ReasonMalformed},
		"not base64":        {h: `Token token="%%%"`, reason: authn.ReasonMalformed},
		"only padding":      {h: `Token token="=="`, reason: authn.ReasonMissing},
		"line break":        {h: "Token token=\"" + std[:10] + "\r\n" + std[10:] + "\"", reason: authn.ReasonMalformed},
		"fuzz: lone CR":     {h: "Token token=\"\r\"", reason: authn.ReasonMalformed},
		"too long":          {h: `Token token="` + strings.Repeat("A", 3*MaxTokenSize) + `"`, reason: authn.ReasonMalformed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := ParseAuthorization(tc.h)
			if tc.reason != "" {
				if !authn.IsReason(err, tc.reason) {
					t.Fatalf("ParseAuthorization = %q, %v (%s); want %s", raw, err, detail(err), tc.reason)
				}
				return
			}
			if err != nil || string(raw) != tok {
				t.Fatalf("ParseAuthorization = %q, %v (%s)", raw, err, detail(err))
			}
		})
	}
}

func TestFromMetadata(t *testing.T) {
	t.Parallel()
	tok := `{"protected":"a","payload":"b","signature":"c"}`
	h := `Token token="` + base64.StdEncoding.EncodeToString([]byte(tok)) + `"`
	tests := map[string]struct {
		md     map[string][]string
		reason authn.Reason
	}{
		"one value":  {md: map[string][]string{"authorization": {h}}},
		"none":       {md: map[string][]string{"x": {h}}, reason: authn.ReasonMissing},
		"nil":        {md: nil, reason: authn.ReasonMissing},
		"two values": {md: map[string][]string{"authorization": {h, h}}, reason: authn.ReasonMalformed},
		"bad value":  {md: map[string][]string{"authorization": {"Bearer x"}}, reason: authn.ReasonMalformed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := FromMetadata(tc.md)
			if tc.reason != "" {
				if !authn.IsReason(err, tc.reason) {
					t.Fatalf("FromMetadata = %v (%s), want %s", err, detail(err), tc.reason)
				}
				return
			}
			if err != nil || string(raw) != tok {
				t.Fatalf("FromMetadata = %q, %v", raw, err)
			}
		})
	}
}

func TestVerifiedCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, EdDSA)
	tok := mustIssue(t, f.svc, "host/app")
	for range 2 {
		c, err := f.svc.Verify(ctx, tok.JSON)
		if err != nil || c.Subject != "host/app" {
			t.Fatalf("Verify = %+v, %v", c, err)
		}
	}
	if n := len(f.svc.verified.m); n != 1 {
		t.Fatalf("cache holds %d tokens after verifying one twice, want 1", n)
	}

	// Other bytes are other tokens: a changed signature is verified, and refused.
	forged := bytes.Replace(tok.JSON, []byte(`"signature":"`), []byte(`"signature":"A`), 1)
	if _, err := f.svc.Verify(ctx, forged); err == nil {
		t.Fatal("a token with a changed signature verified")
	}

	// The time checks run on a cached token too.
	f.clock.Advance(DefaultTTL + DefaultLeeway)
	if _, err := f.svc.Verify(ctx, tok.JSON); !authn.IsReason(err, authn.ReasonExpired) {
		t.Fatalf("cached token past its expiry: %v (%s)", err, detail(err))
	}

	// The cache is bounded.
	var c verifiedCache
	r := f.svc.ring.Load()
	for i := range verifiedCacheSize + 10 {
		var sum [32]byte
		sum[0], sum[1] = byte(i), byte(i>>8)
		c.put(sum, r, Claims{})
	}
	if len(c.m) != verifiedCacheSize {
		t.Fatalf("cache holds %d entries, bound is %d", len(c.m), verifiedCacheSize)
	}
}
