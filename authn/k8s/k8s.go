package k8s

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/jwt"
)

// ErrUnknownHost is what Hosts.Annotations returns for a host that does not exist.
var ErrUnknownHost = errors.New("k8s: no such host")

// Errors from New.
var (
	ErrServiceIDRequired = errors.New("k8s: ServiceID is required")
	ErrJWTRequired       = errors.New("k8s: JWT (the token verifier) is required")
	ErrHostsRequired     = errors.New("k8s: Hosts is required")
)

// Hosts is what the authenticator needs from the policy. hostID is a role
// login ("host/conjur/authn-k8s/prod/apps/shop/*/*", or any host of the
// policy: "host/team-a/shop/deployment/web").
type Hosts interface {
	// Annotations returns the host's annotations, or an error matching
	// ErrUnknownHost.
	Annotations(ctx context.Context, hostID string) (map[string]string, error)
	// CanAuthenticate reports whether the host holds authenticate on the
	// webservice ("conjur/authn-k8s/prod").
	CanAuthenticate(ctx context.Context, hostID, webservice string) (bool, error)
}

// Config holds an Authenticator's dependencies; one Authenticator serves one
// service id.
type Config struct {
	ServiceID string
	// JWT verifies the tokens (settings from the service's variables).
	JWT   *jwt.Authenticator
	Hosts Hosts
	// Kube reads pods, the objects hosts name and the owner chains between
	// them. Without it, nothing is read: the pod, a named pod or service
	// account are taken from the token alone, and hosts that name a
	// controller are refused.
	Kube API
	// Webservice is the resource hosts need authenticate on
	// (default "conjur/authn-k8s/<ServiceID>").
	Webservice string
}

// Option changes an optional behaviour of an Authenticator.
type Option func(*Authenticator)

// WithAPITimeout bounds the Kubernetes API calls of one authentication
// (default 10s).
func WithAPITimeout(d time.Duration) Option { return func(a *Authenticator) { a.apiTimeout = d } }

// Authenticator authenticates Kubernetes workloads for one service id.
type Authenticator struct {
	cfg        Config
	apiTimeout time.Duration
}

// New returns an Authenticator.
func New(cfg Config, opts ...Option) (*Authenticator, error) {
	switch {
	case cfg.ServiceID == "":
		return nil, ErrServiceIDRequired
	case cfg.JWT == nil:
		return nil, ErrJWTRequired
	case cfg.Hosts == nil:
		return nil, ErrHostsRequired
	}
	if cfg.Webservice == "" {
		cfg.Webservice = "conjur/authn-k8s/" + cfg.ServiceID
	}
	a := &Authenticator{cfg: cfg, apiTimeout: 10 * time.Second}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// Request is one authentication.
type Request struct {
	// Token is the service-account JWT (the body's jwt=).
	Token string
	// Host is the host named in the URL, if any (role login, "host/" optional).
	Host string
}

// Result is a successful authentication.
type Result struct {
	// HostID is the authenticated role login ("host/...").
	HostID      string
	Workload    Workload
	Controllers Controllers
	Identity    AppIdentity
	Claims      *jwt.Claims
}

// Authenticate runs every check and returns the host, a refusal (matching
// authn.ErrUnauthenticated; authn.ReasonOf says which check failed), or an
// error from Hosts (for the server to answer 5xx). The checks, in Conjur's
// order: the token (authn/jwt), the host it names, that the host exists and
// may authenticate (a refusal with authn.ReasonNotPermitted, which Conjur
// answers 403), the host's application identity, the token's workload
// against it, and through the Kubernetes API that the pod still exists,
// that each object the host names exists, and that the pod belongs to it.
func (a *Authenticator) Authenticate(ctx context.Context, req Request) (*Result, error) {
	claims, err := a.cfg.JWT.Verify(ctx, req.Token)
	if err != nil {
		return nil, err
	}
	hostID, err := a.cfg.JWT.Identity(claims, req.Host)
	if err != nil {
		return nil, err
	}
	w, err := WorkloadFromClaims(claims)
	if err != nil {
		return nil, err
	}
	ann, err := a.cfg.Hosts.Annotations(ctx, hostID)
	if errors.Is(err, ErrUnknownHost) {
		return nil, authn.Refuse(authn.ReasonUnknownIdentity, "host %q does not exist", hostID)
	}
	if err != nil {
		return nil, fmt.Errorf("k8s: read host %q: %w", hostID, err)
	}
	ok, err := a.cfg.Hosts.CanAuthenticate(ctx, hostID, a.cfg.Webservice)
	if err != nil {
		return nil, fmt.Errorf("k8s: check permission of %q: %w", hostID, err)
	}
	if !ok {
		return nil, authn.Refuse(authn.ReasonNotPermitted, "host %q lacks authenticate on webservice %s", hostID, a.cfg.Webservice)
	}
	id, err := ApplicationIdentity(a.cfg.ServiceID, hostID, ann)
	if err != nil {
		return nil, err
	}
	// Compare what the token says before asking the API anything.
	if err := (AppIdentity{Namespace: id.Namespace, Constraints: nonControllers(id)}).Check(w, Controllers{}); err != nil {
		return nil, err
	}
	var ctl Controllers
	if a.cfg.Kube != nil {
		actx, cancel := context.WithTimeout(ctx, a.apiTimeout)
		defer cancel()
		if ctl, err = (Resolver{Client: a.cfg.Kube}).Verify(actx, w, id); err != nil {
			return nil, err
		}
	} else if id.NeedsController() {
		return nil, authn.Refuse(authn.ReasonUnavailable, "host %q names a controller but no Kubernetes API is configured to read it", hostID)
	}
	if err := id.Check(w, ctl); err != nil {
		return nil, err
	}
	return &Result{HostID: hostID, Workload: w, Controllers: ctl, Identity: id, Claims: claims}, nil
}

// nonControllers returns the constraints that the token alone can check.
func nonControllers(id AppIdentity) map[Resource]string {
	out := map[Resource]string{}
	for r, n := range id.Constraints {
		if s, _ := specOf(r); !s.controller {
			out[r] = n
		}
	}
	return out
}
