package fetch

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// busyLeader answers every login with a token and every seed request with
// the given status and Retry-After, counting the seed requests.
type busyLeader struct {
	status     int
	retryAfter string
	seeds      atomic.Int32
}

func (b *busyLeader) RoundTrip(r *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r,
		Body: io.NopCloser(strings.NewReader(base64.StdEncoding.EncodeToString([]byte(`{"token":1}`))))}
	if strings.HasPrefix(r.URL.Path, "/configuration/") {
		b.seeds.Add(1)
		resp.StatusCode, resp.Status = b.status, http.StatusText(b.status)
		resp.Body = io.NopCloser(strings.NewReader(`{"error":{"code":"service_unavailable","message":"seed: too many seed requests waiting"}}`))
		if b.retryAfter != "" {
			resp.Header.Set("Retry-After", b.retryAfter)
		}
	}
	return resp, nil
}

// A Leader that answers 503 with Retry-After is not asked again before
// that wait, however short the fetcher's own backoff; without the header
// the backoff alone paces the attempts.
func TestRetryHonoursRetryAfter(t *testing.T) {
	for name, tc := range map[string]struct {
		leader   *busyLeader
		min, max int32
	}{
		"503 with Retry-After: 1": {leader: &busyLeader{status: http.StatusServiceUnavailable, retryAfter: "1"}, min: 1, max: 2},
		"429 with Retry-After: 1": {leader: &busyLeader{status: http.StatusTooManyRequests, retryAfter: "1"}, min: 1, max: 2},
		"503 without Retry-After": {leader: &busyLeader{status: http.StatusServiceUnavailable}, min: 5, max: 1000},
		"an HTTP date is ignored": {leader: &busyLeader{status: http.StatusServiceUnavailable, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"}, min: 5, max: 1000},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := Config{SeedURL: "https://leader.test/configuration/acme/seed/follower", Account: "acme", Login: "host/f",
				APIKey: "k", Backoff: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
			ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
			defer cancel()
			_, err := c.retry(ctx, &http.Client{Transport: tc.leader})
			if err == nil || !strings.Contains(err.Error(), "gave up") {
				t.Fatalf("retry = %v; want it to give up at the deadline", err)
			}
			if n := tc.leader.seeds.Load(); n < tc.min || n > tc.max {
				t.Errorf("%d seed requests in 1.2 s; want %d to %d", n, tc.min, tc.max)
			}
		})
	}
}

func TestRetryAfterIsBounded(t *testing.T) {
	for header, want := range map[string]time.Duration{"1": time.Second, "30": 30 * time.Second, "100000": MaxRetryAfter, "0": 0, "-3": 0, "soon": 0, "": 0} {
		resp := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {header}}}
		if got := retryAfter(resp); got != want {
			t.Errorf("Retry-After %q = %v, want %v", header, got, want)
		}
	}
	if got := retryAfter(&http.Response{StatusCode: http.StatusInternalServerError, Header: http.Header{"Retry-After": {"5"}}}); got != 0 {
		t.Errorf("a 500's Retry-After was taken: %v", got)
	}
}
