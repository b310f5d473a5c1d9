package k8s_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sowerproject/sower/authn/k8s"
)

// TestClientBoundsAndStatuses: an answer over MaxObjectSize is refused
// unread, a Status answer keeps its code, reason and message, and the
// path is sent as given with JSON asked for.
func TestClientBoundsAndStatuses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			http.Error(w, "want JSON", http.StatusNotAcceptable)
			return
		}
		switch r.URL.Path {
		case "/api/v1/namespaces/shop/pods/huge":
			_, _ = w.Write([]byte(`{"kind":"Pod","metadata":{"name":"` + strings.Repeat("x", k8s.MaxObjectSize) + `"}}`))
		case "/api/v1/namespaces/shop/pods/web":
			_, _ = w.Write([]byte(`{"kind":"Pod","metadata":{"name":"web"}}`))
		default:
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","message":"pods \"x\" is forbidden","code":403}`))
		}
	}))
	defer srv.Close()
	c := k8s.NewClient(srv.URL+"/", srv.Client(), 0, 0)
	ctx := context.Background()
	if _, err := c.Get(ctx, "/api/v1/namespaces/shop/pods/huge"); !errors.Is(err, k8s.ErrObjectTooLarge) {
		t.Errorf("huge answer: %v, want ErrObjectTooLarge", err)
	}
	if b, err := c.Get(ctx, "/api/v1/namespaces/shop/pods/web"); err != nil || !strings.Contains(string(b), `"web"`) {
		t.Errorf("pod: %s, %v", b, err)
	}
	_, err := c.Get(ctx, "/api/v1/namespaces/shop/pods/x")
	var se *k8s.StatusError
	if !errors.As(err, &se) || se.Code != 403 || se.Reason != "Forbidden" || !strings.Contains(err.Error(), "is forbidden") || k8s.IsNotFound(err) {
		t.Errorf("forbidden: %#v", err)
	}
}
