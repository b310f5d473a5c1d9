package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/time/rate"
)

// API reads single objects from the Kubernetes API: the JSON the API
// server answers to GET path (for example
// /api/v1/namespaces/shop/pods/web-0), or a *StatusError for an answer
// other than 200. The authenticator only ever gets objects by name, so this
// is all it asks of a client; the server's Client does it over HTTPS.
type API interface {
	Get(ctx context.Context, path string) ([]byte, error)
}

// MaxObjectSize bounds one object read from the API (1 MiB; a pod or
// controller is a few KiB). A larger answer is refused, not decoded.
const MaxObjectSize = 1 << 20

// ErrObjectTooLarge is what Client.Get returns for an answer over MaxObjectSize.
var ErrObjectTooLarge = errors.New("k8s: the Kubernetes API's answer is larger than 1 MiB (MaxObjectSize)")

// StatusError is an answer of the API other than 200, with the reason and
// message of its Status object when it has one.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%d %s: %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code))
}

// IsNotFound reports whether err is the API's 404: the object does not exist.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Client is an API over HTTP: GET base+path with JSON accepted. Its
// http.Client carries the TLS settings and the bearer token.
type Client struct {
	base  string
	hc    *http.Client
	limit *rate.Limiter
}

// NewClient returns a Client of the API server at base (https://host:port).
// qps > 0 limits the requests it sends to qps a second with bursts of burst,
// sparing the API server; a request waits for its turn within its context.
func NewClient(base string, hc *http.Client, qps float64, burst int) *Client {
	c := &Client{base: strings.TrimSuffix(base, "/"), hc: hc}
	if qps > 0 {
		c.limit = rate.NewLimiter(rate.Limit(qps), max(burst, 1))
	}
	return c
}

// Get implements API.
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
	if c.limit != nil {
		if err := c.limit.Wait(ctx); err != nil {
			return nil, fmt.Errorf("k8s: waiting for the client's rate limit: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxObjectSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxObjectSize {
		return nil, ErrObjectTooLarge
	}
	if resp.StatusCode != http.StatusOK {
		se := &StatusError{Code: resp.StatusCode}
		var st struct {
			Kind    string `json:"kind"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
			se.Reason, se.Message = st.Reason, st.Message
		}
		return nil, se
	}
	return body, nil
}

// objectPath is the API path of a namespaced object: group "" is the core
// API (/api/v1), others /apis/<group>/v1.
func objectPath(group, ns, resource, name string) string {
	prefix := "/api/v1"
	if group != "" {
		prefix = "/apis/" + group + "/v1"
	}
	return prefix + "/namespaces/" + url.PathEscape(ns) + "/" + resource + "/" + url.PathEscape(name)
}

// object is what the authenticator reads of any Kubernetes object: its
// metadata (names, uid, controller reference) and, of a pod, the service
// account. Other fields are ignored.
type object struct {
	Kind     string     `json:"kind"`
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		ServiceAccountName string `json:"serviceAccountName"`
	} `json:"spec"`
}

type objectMeta struct {
	Name            string     `json:"name"`
	Namespace       string     `json:"namespace"`
	UID             string     `json:"uid"`
	OwnerReferences []ownerRef `json:"ownerReferences"`
}

type ownerRef struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller *bool  `json:"controller"`
}

// controller is the owner reference marked controller, as metav1's
// GetControllerOf finds it.
func (m objectMeta) controller() *ownerRef {
	for i := range m.OwnerReferences {
		if r := &m.OwnerReferences[i]; r.Controller != nil && *r.Controller {
			return r
		}
	}
	return nil
}
