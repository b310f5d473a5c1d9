package seed

import (
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/seed"
	"github.com/sowerproject/sower/server/conjur"
)

// TestBusyIsUnavailableWithRetryAfter: a storm past the seed queue's limit
// answers 503 with Retry-After, not 500.
func TestBusyIsUnavailableWithRetryAfter(t *testing.T) {
	s := &Service{c: Config{Logger: slog.New(slog.DiscardHandler)}}
	err := s.toStatus("issue Follower seed", authn.Identity{}, fmt.Errorf("%w: 1024 wait", seed.ErrBusy))
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("code %s, want Unavailable (503)", st.Code())
	}
	h := http.Header{}
	conjur.SetRetryAfter(h, st)
	if got := h.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want 1", got)
	}
}
