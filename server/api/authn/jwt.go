package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/jwt"
	"github.com/sowerproject/sower/authn/k8s"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Variables reads the values of the variables that hold an authenticator's
// settings; *etcdstore.Secrets implements it. A variable without a value is
// an error matching etcdstore.ErrNoSecret.
type Variables interface {
	Get(ctx context.Context, resourceID string, version int64) ([]byte, int64, error)
}

// The two kinds of JWT authenticator a policy can enable for a service id.
const (
	// kindJWT is webservice conjur/authn-jwt/<id>: any JWT; the host comes
	// from the URL or token-app-property, restricted by the host's
	// authn-jwt/<id>/<claim> annotations.
	kindJWT = "authn-jwt"
	// kindK8s is webservice conjur/authn-k8s/<id>: Kubernetes
	// service-account tokens, hosts in the six host-id forms or the
	// authn-k8s annotation form, pods and controllers checked through the
	// Kubernetes API.
	kindK8s = "authn-k8s"
)

// settingVariables are the variables under conjur/<kind>/<id>/ that
// configure a service, as Conjur names them.
var settingVariables = []string{
	"jwks-uri", "public-keys", "ca-cert", "provider-uri", "issuer", "audience",
	"token-app-property", "identity-path",
	"kubernetes/api-url", "kubernetes/ca-cert", "kubernetes/service-account-token",
}

// jwtService is one enabled service's verifier, built from its variables.
type jwtService struct {
	kind, id string
	jwt      *jwt.Authenticator
	k8s      *k8s.Authenticator
	// transport is the Kubernetes API client's, closed with the service.
	transport *http.Transport
}

func (j *jwtService) close() {
	if j == nil {
		return
	}
	if j.jwt != nil {
		_ = j.jwt.Close()
	}
	if j.transport != nil {
		j.transport.CloseIdleConnections()
	}
}

// jwtEntry is a cache slot: done is closed once svc or err is set.
type jwtEntry struct {
	done  chan struct{}
	svc   *jwtService
	err   error
	stale bool
}

// jwtServices caches one verifier per enabled service, built on first use
// from the service's variables and dropped when one of them changes
// (Invalidate, called by the secret store's watch).
type jwtServices struct {
	account string
	vars    Variables
	graph   func() *policy.Graph
	kube    k8s.API
	opts    []jwt.Option

	mu      sync.Mutex
	entries map[string]*jwtEntry
}

func newJWTServices(c Config) *jwtServices {
	return &jwtServices{account: c.Account, vars: c.Variables, graph: c.Graph, kube: c.Kube, opts: c.JWTOptions, entries: map[string]*jwtEntry{}}
}

// Invalidate drops the cached verifier whose settings include the variable
// resourceID; "" drops every one.
func (r *jwtServices) Invalidate(resourceID string) {
	key := ""
	if resourceID != "" {
		id, err := policy.ParseID(resourceID)
		if err != nil || id.Account != r.account || id.Kind != policy.KindVariable {
			return
		}
		for _, kind := range []string{kindJWT, kindK8s} {
			if rest, ok := strings.CutPrefix(id.Name, "conjur/"+kind+"/"); ok {
				if sid, _, found := strings.Cut(rest, "/"); found {
					key = kind + "/" + sid
				}
			}
		}
		if key == "" {
			return
		}
	}
	r.mu.Lock()
	var dropped []*jwtEntry
	for k, e := range r.entries {
		if key == "" || k == key {
			e.stale = true
			dropped = append(dropped, e)
			delete(r.entries, k)
		}
	}
	r.mu.Unlock()
	for _, e := range dropped {
		select {
		case <-e.done:
			e.svc.close()
		default: // the builder closes it when done
		}
	}
}

// Close drops every cached verifier.
func (r *jwtServices) Close() { r.Invalidate("") }

// enabled returns which kind of authenticator the policy enables for the
// service id, or a refusal.
func (r *jwtServices) enabled(serviceID string) (string, error) {
	if serviceID == "" || strings.ContainsAny(serviceID, "/\x00") || len(serviceID) > 256 {
		return "", authn.Refuse(authn.ReasonInvalidHostID, "service id %q is not a service id", clipped(serviceID))
	}
	g := r.graph()
	for _, kind := range []string{kindJWT, kindK8s} {
		if _, ok := g.Resource(policy.NewID(r.account, policy.KindWebservice, "conjur/"+kind+"/"+serviceID)); ok {
			return kind, nil
		}
	}
	return "", authn.Refuse(authn.ReasonNotEnabled, "authenticator %s is not enabled: the policy declares neither webservice conjur/authn-jwt/%s nor conjur/authn-k8s/%s", clipped(serviceID), clipped(serviceID), clipped(serviceID))
}

// get returns the service's verifier, building it at most once at a time.
func (r *jwtServices) get(ctx context.Context, kind, serviceID string) (*jwtService, error) {
	key := kind + "/" + serviceID
	r.mu.Lock()
	e, ok := r.entries[key]
	if !ok {
		e = &jwtEntry{done: make(chan struct{})}
		r.entries[key] = e
	}
	r.mu.Unlock()
	if !ok {
		// Built under its own deadline: one caller giving up must not fail
		// the others waiting for the same service.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		e.svc, e.err = r.build(bctx, kind, serviceID)
		cancel()
		r.mu.Lock()
		// Errors other than bad settings (etcd unreachable) are not kept.
		if e.err != nil && !errors.Is(e.err, jwt.ErrSettings) && r.entries[key] == e {
			delete(r.entries, key)
		}
		stale := e.stale
		r.mu.Unlock()
		close(e.done)
		if stale {
			// Invalidated while it was built: the callers already
			// waiting use it once; only idle connections are closed.
			defer e.svc.close()
		}
	}
	select {
	case <-e.done:
		return e.svc, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// build reads the service's variables and makes its verifier.
func (r *jwtServices) build(ctx context.Context, kind, serviceID string) (*jwtService, error) {
	prefix := "conjur/" + kind + "/" + serviceID + "/"
	v := map[string]string{}
	for _, name := range settingVariables {
		val, _, err := r.vars.Get(ctx, policy.NewID(r.account, policy.KindVariable, prefix+name).String(), 0)
		if errors.Is(err, etcdstore.ErrNoSecret) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the settings of %s/%s: %w", kind, serviceID, err)
		}
		v[name] = strings.TrimSpace(string(val))
	}
	svc := &jwtService{kind: kind, id: serviceID}
	opts := append([]jwt.Option(nil), r.opts...)
	kube := r.kube
	if api := v["kubernetes/api-url"]; api != "" {
		cs, tr, err := kubeClient(api, v["kubernetes/ca-cert"], v["kubernetes/service-account-token"])
		if err != nil {
			return nil, err
		}
		kube, svc.transport = cs, tr
		// A Kubernetes API server's JWKS endpoint usually needs the
		// service account's token too.
		if u, err := url.Parse(v["jwks-uri"]); err == nil && sameHost(u, api) && v["kubernetes/service-account-token"] != "" {
			opts = append(opts, jwt.WithHTTPClient(&http.Client{Transport: bearer{token: v["kubernetes/service-account-token"], rt: tr}, Timeout: jwt.DefaultFetchTimeout}))
		}
	}
	j, err := jwt.New(jwt.Settings{
		JWKSURI: v["jwks-uri"], PublicKeys: v["public-keys"], CACert: v["ca-cert"], ProviderURI: v["provider-uri"],
		Issuer: v["issuer"], Audience: v["audience"], TokenAppProperty: v["token-app-property"], IdentityPath: v["identity-path"],
	}, opts...)
	if err != nil {
		svc.close()
		return nil, fmt.Errorf("settings of %s/%s (variables under %s): %w", kind, serviceID, prefix, err)
	}
	svc.jwt = j
	if kind == kindK8s {
		svc.k8s, err = k8s.New(k8s.Config{ServiceID: serviceID, JWT: j, Hosts: graphHosts{account: r.account, graph: r.graph}, Kube: kube})
		if err != nil {
			svc.close()
			return nil, err
		}
	}
	return svc, nil
}

func sameHost(u *url.URL, api string) bool {
	a, err := url.Parse(api)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, a.Host)
}

// kubeClient makes a Kubernetes API client from Conjur's kubernetes/*
// variables: single objects by name (k8s.API), at most 200 requests a
// second with bursts of 400, high enough for thousands of authentications
// a minute while sparing the API server.
func kubeClient(apiURL, caPEM, token string) (*k8s.Client, *http.Transport, error) {
	u, err := url.Parse(apiURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("%w: kubernetes/api-url %q must be an https:// URL", jwt.ErrSettings, apiURL)
	}
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, nil, fmt.Errorf("%w: kubernetes/ca-cert holds no PEM certificate", jwt.ErrSettings)
		}
		tlsc.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tlsc, IdleConnTimeout: 90 * time.Second, MaxIdleConnsPerHost: 32, ForceAttemptHTTP2: true}
	var rt http.RoundTripper = tr
	if token != "" {
		rt = bearer{token: token, rt: tr}
	}
	return k8s.NewClient(apiURL, &http.Client{Transport: rt, Timeout: 10 * time.Second}, 200, 400), tr, nil
}

// bearer adds a service account's token to each request.
type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(req)
}

// graphHosts answers k8s.Hosts from the policy graph.
type graphHosts struct {
	account string
	graph   func() *policy.Graph
}

func (h graphHosts) hostID(login string) (policy.ID, error) {
	id, err := authn.ParseLogin(h.account, login)
	if err != nil || id.Kind != policy.KindHost {
		return policy.ID{}, fmt.Errorf("%q is not a host login: %w", clipped(login), k8s.ErrUnknownHost)
	}
	return policy.NewID(h.account, policy.KindHost, id.ID), nil
}

// Annotations returns the host's annotations.
func (h graphHosts) Annotations(_ context.Context, login string) (map[string]string, error) {
	id, err := h.hostID(login)
	if err != nil {
		return nil, err
	}
	info, ok := h.graph().Resource(id)
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, k8s.ErrUnknownHost)
	}
	out := make(map[string]string, len(info.Annotations))
	for _, a := range info.Annotations {
		out[a.Name] = a.Value
	}
	return out, nil
}

// CanAuthenticate reports whether the host holds authenticate on the
// webservice.
func (h graphHosts) CanAuthenticate(_ context.Context, login, webservice string) (bool, error) {
	id, err := h.hostID(login)
	if err != nil {
		return false, nil
	}
	return h.graph().Allowed(id, "authenticate", policy.NewID(h.account, policy.KindWebservice, webservice)), nil
}

// authenticate runs the service's checks and returns the host's login.
func (r *jwtServices) authenticate(ctx context.Context, kind string, svc *jwtService, host, token string) (string, error) {
	if kind == kindK8s {
		res, err := svc.k8s.Authenticate(ctx, k8s.Request{Token: token, Host: host})
		if err != nil {
			return "", err
		}
		return res.HostID, nil
	}
	claims, err := svc.jwt.Verify(ctx, token)
	if err != nil {
		return "", err
	}
	login, err := svc.jwt.Identity(claims, host)
	if err != nil {
		return "", err
	}
	hosts := graphHosts{account: r.account, graph: r.graph}
	ann, err := hosts.Annotations(ctx, login)
	if err != nil {
		return "", authn.Refuse(authn.ReasonUnknownIdentity, "host %q does not exist", clipped(login))
	}
	if err := jwt.MatchAnnotations(svc.id, ann, claims); err != nil {
		return "", err
	}
	webservice := "conjur/" + kindJWT + "/" + svc.id
	if ok, _ := hosts.CanAuthenticate(ctx, login, webservice); !ok {
		return "", authn.Refuse(authn.ReasonNotPermitted, "host %q lacks authenticate on webservice %s", clipped(login), webservice)
	}
	return login, nil
}

func clipped(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

// errNotPermitted answers a host that lacks authenticate on the webservice.
var errNotPermitted = status.Error(codes.PermissionDenied, "the host lacks authenticate on the authenticator's webservice")

// AuthenticateJWT exchanges a JWT for an access token of the host it
// authenticates. Every refusal is the same Unauthenticated answer; the log
// and the audit trail say which check failed.
func (s *Service) AuthenticateJWT(ctx context.Context, req *sowerv1.AuthenticateJWTRequest) (*sowerv1.AuthenticateJWTResponse, error) {
	if s.jwts == nil {
		return nil, status.Error(codes.Unimplemented, "the JWT authenticator is not configured on this node")
	}
	how := kindJWT + "/" + clipped(req.GetServiceId())
	claimed := ""
	if h := req.GetHost(); h != "" {
		if id, err := authn.ParseLogin(s.c.Account, "host/"+strings.TrimPrefix(h, "host/")); err == nil {
			claimed = id.RoleID()
		}
	}
	refuse := func(err error) (*sowerv1.AuthenticateJWTResponse, error) {
		if !errors.Is(err, authn.ErrUnauthenticated) {
			s.c.Logger.ErrorContext(ctx, "JWT authentication could not be checked", "authenticator", how, "err", err)
			reason := authn.ReasonUnavailable
			if errors.Is(err, jwt.ErrSettings) {
				// Conjur answers a misconfigured authenticator with 401.
				err = authn.Refuse(reason, "authenticator settings are invalid: %v", err)
			} else {
				s.audit(ctx, etcdstore.AuthnEvent{Outcome: etcdstore.OutcomeFailure, Authenticator: how, Identity: claimed,
					Reason: string(reason), Detail: "the authenticator could not be checked; see the node log", Method: "AuthenticateJWT"})
				return nil, status.Error(codes.Unavailable, "cannot check JWTs right now; try again")
			}
		}
		s.refused(ctx, how, claimed, "AuthenticateJWT", err)
		if authn.IsReason(err, authn.ReasonNotPermitted) {
			// Conjur answers a host that exists but lacks authenticate on
			// the webservice 403 (RoleNotAuthorizedOnResource), after the
			// token verified: only a valid token's holder learns it.
			return nil, errNotPermitted
		}
		return nil, errUnauthenticated
	}
	if req.GetAccount() != s.c.Account {
		return refuse(authn.Refuse(authn.ReasonUnknownIdentity, "account %q is not this cluster's account", clipped(req.GetAccount())))
	}
	if strings.TrimSpace(req.GetJwt()) == "" {
		return refuse(authn.Refuse(authn.ReasonMissing, "no jwt in the request body"))
	}
	kind, err := s.jwts.enabled(req.GetServiceId())
	if err != nil {
		return refuse(err)
	}
	how = kind + "/" + req.GetServiceId()
	// A service switched off (conjur authenticator disable) refuses as
	// Conjur refuses one not enabled: 401, the reason in the log only.
	if off, err := s.disabled(ctx, kind, req.GetServiceId()); err != nil {
		return refuse(fmt.Errorf("read the switch of %s: %w", how, err))
	} else if off {
		return refuse(authn.Refuse(authn.ReasonNotEnabled, "authenticator %s is switched off (conjur authenticator enable to switch it on)", how))
	}
	svc, err := s.jwts.get(ctx, kind, req.GetServiceId())
	if err != nil {
		return refuse(err)
	}
	login, err := s.jwts.authenticate(ctx, kind, svc, req.GetHost(), req.GetJwt())
	if err != nil {
		return refuse(err)
	}
	id, err := authn.ParseLogin(s.c.Account, login)
	if err != nil {
		return refuse(authn.Refuse(authn.ReasonInvalidHostID, "%v", err))
	}
	claimed = id.RoleID()
	nets, err := s.checkOrigin(ctx, id.RoleID())
	if err != nil {
		return refuse(err)
	}
	tok, err := s.c.Tokens.Issue(id.Login(), token.WithCIDR(nets.Strings()))
	if err != nil {
		s.c.Logger.ErrorContext(ctx, "issue access token", "login", id.Login(), "err", err)
		return nil, status.Error(codes.Unavailable, "cannot issue access tokens right now; try again")
	}
	s.succeeded(ctx, how, id.RoleID(), "AuthenticateJWT")
	return &sowerv1.AuthenticateJWTResponse{Token: tok.JSON, ExpiresAt: tok.Claims.Expires.Unix(), Login: id.Login()}, nil
}

// InvalidateJWT drops the cached JWT authenticator whose settings include
// the variable resourceID ("" drops all). The server calls it when a
// variable changes.
func (s *Service) InvalidateJWT(resourceID string) {
	if s.jwts != nil {
		s.jwts.Invalidate(resourceID)
	}
}

// Close releases the JWT authenticators' connections.
func (s *Service) Close() error {
	if s.jwts != nil {
		s.jwts.Close()
	}
	return nil
}

// succeeded logs and audits a successful authentication.
func (s *Service) succeeded(ctx context.Context, how, roleID, method string) {
	s.c.Logger.InfoContext(ctx, "authenticated", "authenticator", how, "role", roleID, "peer", rpcctx.PeerAddr(ctx))
	s.audit(ctx, etcdstore.AuthnEvent{Outcome: etcdstore.OutcomeSuccess, Authenticator: how, Identity: roleID, Method: method})
}

func (s *Service) audit(ctx context.Context, e etcdstore.AuthnEvent) {
	if s.c.Audit == nil {
		return
	}
	e.Source = rpcctx.PeerAddr(ctx)
	s.c.Audit.Record(e)
}
