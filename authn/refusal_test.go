package authn_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/sowerproject/sower/authn"
)

func TestRefusal(t *testing.T) {
	t.Parallel()
	cause := io.ErrUnexpectedEOF
	err := authn.Refuse(authn.ReasonExpired, "token expired at %d: %w", 42, cause)
	wrapped := fmt.Errorf("authenticate host/x: %w", err)

	if !errors.Is(wrapped, authn.ErrUnauthenticated) {
		t.Fatal("refusal does not match ErrUnauthenticated")
	}
	if !errors.Is(wrapped, cause) {
		t.Fatal("refusal does not unwrap to its cause")
	}
	if got := err.Error(); got != authn.ErrUnauthenticated.Error() {
		t.Fatalf("Error() = %q, want the generic message", got)
	}
	reason, detail := authn.ReasonOf(wrapped)
	if reason != authn.ReasonExpired || !strings.Contains(detail, "expired at 42") {
		t.Fatalf("ReasonOf = %q, %q", reason, detail)
	}
	if !authn.IsReason(wrapped, authn.ReasonExpired) || authn.IsReason(wrapped, authn.ReasonAudience) {
		t.Fatal("IsReason is wrong")
	}
	if r, d := authn.ReasonOf(errors.New("plain")); r != "" || d != "" {
		t.Fatalf("ReasonOf(plain) = %q, %q", r, d)
	}

	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("refused", "err", err)
	if !strings.Contains(buf.String(), "err.reason=expired") {
		t.Fatalf("slog output lacks the reason: %s", buf.String())
	}
}
