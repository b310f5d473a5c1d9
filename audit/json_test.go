package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// AppendJSON must write exactly what json.Marshal writes: the queue's
// records and the trail's values are read back with encoding/json.
func TestAppendJSONIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 12, 6, 0, 15, 0, 123456789, time.UTC)
	base := Event{ID: "f1/7", At: at, Node: "f1", Kind: KindSecretRead, Action: "read", Outcome: OutcomeSuccess,
		Identity: "acme:host:app", Resource: "acme:variable:db/password", Version: 3, Source: "127.0.0.1:4242"}
	for name, e := range map[string]Event{
		"a read":          base,
		"fields left out": {ID: "f1/1", At: at, Node: "f1", Kind: KindAuthn, Action: "authenticate", Outcome: OutcomeFailure},
		"every field": func() Event {
			e := base
			e.Authenticator, e.Reason, e.Count, e.Last = "authn-jwt/k8s", "bad key", 12, at.Add(time.Second)
			return e
		}(),
		"whole second":     func() Event { e := base; e.At = at.Truncate(time.Second); return e }(),
		"an offset":        func() Event { e := base; e.At = at.In(time.FixedZone("x", -(5*3600 + 30*60))); return e }(),
		"odd offset":       func() Event { e := base; e.At = at.In(time.FixedZone("x", 3600+7)); return e }(),
		"negative version": func() Event { e := base; e.Version = -2; return e }(),
		"quote":            func() Event { e := base; e.Identity = `acme:user:"bob"`; return e }(),
		"html":             func() Event { e := base; e.Resource = "acme:variable:a<b>&c"; return e }(),
		"non-ASCII":        func() Event { e := base; e.Identity = "acme:user:zoë\u2028"; return e }(),
		"control":          func() Event { e := base; e.Reason = "tab\there\x7f"; return e }(),
		"invalid UTF-8":    func() Event { e := base; e.Source = "\xff\xfe"; return e }(),
		"year 10000":       func() Event { e := base; e.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC); return e }(),
		"zone of 24 hours": func() Event { e := base; e.Last = at.In(time.FixedZone("x", 24*3600)); return e }(),
		"zero time":        func() Event { e := base; e.At = time.Time{}; return e }(),
	} {
		t.Run(name, func(t *testing.T) { checkAppendJSON(t, e) })
	}
}

func checkAppendJSON(t *testing.T, e Event) {
	t.Helper()
	want, werr := json.Marshal(e)
	got, gerr := e.AppendJSON([]byte("prefix"))
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("AppendJSON error %v, json.Marshal error %v", gerr, werr)
	}
	if werr != nil {
		return
	}
	if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("AppendJSON:\n%s\njson.Marshal:\n%s", got, want)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("f1/1", "acme:host:app", "acme:variable:x", "127.0.0.1:1", "", int64(1765000000123456789), 3, int64(0), 0)
	f.Add("f1/2", `a"b\c`, "<&>", "é", "\x00\n", int64(-1<<62), -1, int64(5), 3600)
	f.Fuzz(func(t *testing.T, id, identity, resource, source, reason string, at int64, version int, count int64, offset int) {
		tm := time.Unix(0, at).In(time.FixedZone("z", offset%(48*3600)))
		checkAppendJSON(t, Event{ID: id, At: tm, Node: strings.SplitN(id, "/", 2)[0], Kind: KindAuthn, Action: "authenticate",
			Outcome: OutcomeFailure, Identity: identity, Resource: resource, Version: version, Source: source, Reason: reason,
			Count: count, Last: tm.Add(time.Duration(count))})
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	e := Event{ID: "follower-1/123456", At: time.Now().UTC(), Node: "follower-1", Kind: KindSecretRead, Action: "read",
		Outcome: OutcomeSuccess, Identity: "acme:host:app", Resource: "acme:variable:db/password", Version: 3, Source: "127.0.0.1:4242"}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.AppendJSON(make([]byte, 0, 256)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Validate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := e.Validate(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
