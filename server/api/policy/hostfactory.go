package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/hostfactory"
	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// HostFactoryTokens keeps host factory tokens; *etcdstore.HostFactoryTokens
// implements it.
type HostFactoryTokens interface {
	// Create stores tokens of one host factory at once.
	Create(ctx context.Context, toks []hostfactory.Token, now time.Time) error
	// Find returns the token with a hash, or hostfactory.ErrNotFound.
	Find(ctx context.Context, hash string) (hostfactory.Token, error)
	// Delete revokes a token, or answers hostfactory.ErrNotFound.
	Delete(ctx context.Context, t hostfactory.Token, by string) error
	// List returns a host factory's tokens, oldest first.
	List(ctx context.Context, hostFactoryID string) ([]hostfactory.Token, error)
}

// Limits of a host a host factory creates, named in the errors that
// enforce them.
const (
	// MaxHostIDLength bounds the id of a host created with a token.
	MaxHostIDLength = 512
	// MaxHostAnnotations bounds the annotations of such a host.
	MaxHostAnnotations = 64
	// MaxAnnotationNameLength and MaxAnnotationValueLength bound each.
	MaxAnnotationNameLength  = 256
	MaxAnnotationValueLength = 4096
)

// ReasonArgumentError is Conjur's error code for a request argument it
// refuses (its ArgumentError).
const ReasonArgumentError = "argument_error"

func argumentError(msg string) error {
	return withReason(codes.InvalidArgument, ReasonArgumentError, msg)
}

// errNoTokens answers on a node that keeps no tokens (a Follower).
var errNoTokens = status.Error(codes.Unimplemented, "this node keeps no host factory tokens: send host factory requests to the Leader")

// CreateHostFactoryTokens makes tokens for a host factory, checking as
// Conjur does and in its order: the host factory (404 unseen, 422 not a
// host factory), execute on it (403), expiration, count, networks.
func (s *Service) CreateHostFactoryTokens(ctx context.Context, req *sowerv1.CreateHostFactoryTokensRequest) (*sowerv1.CreateHostFactoryTokensResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	// The account is the host factory id's; account, when given, must be
	// the cluster's too.
	if a := req.GetAccount(); a != "" {
		if err := s.checkAccount(a); err != nil {
			return nil, err
		}
	}
	if s.c.HostFactoryTokens == nil {
		return nil, errNoTokens
	}
	if req.GetHostFactory() == "" {
		return nil, argumentError("host_factory")
	}
	hf, err := policy.ParseRef(req.GetHostFactory(), s.c.Account, policy.KindHostFactory)
	if err != nil {
		return nil, argumentError(fmt.Sprintf("host_factory %q: write the host factory's id, for example %s:host_factory:apps/factory", req.GetHostFactory(), s.c.Account))
	}
	g := s.c.Store.Graph()
	if _, ok := g.Resource(hf); !ok || !g.Visible(caller, hf) || hf.Account != s.c.Account {
		return nil, notFound(hf)
	}
	if hf.Kind != policy.KindHostFactory {
		return nil, argumentError("Invalid resource kind: " + hf.Kind)
	}
	if !g.Allowed(caller, "execute", hf) {
		return nil, status.Errorf(codes.PermissionDenied, "creating tokens of %s needs execute on it", hf)
	}
	if req.GetExpiration() == "" {
		return nil, argumentError("expiration")
	}
	exp, err := time.Parse(time.RFC3339, req.GetExpiration())
	if err != nil {
		return nil, argumentError("Input is invalid ISO8601 datetime string: " + req.GetExpiration())
	}
	count := int(req.GetCount())
	switch {
	case count == 0:
		count = 1
	case count < 0:
		return nil, argumentError(fmt.Sprintf("Invalid value for parameter 'count': %d", count))
	case count > hostfactory.MaxTokensPerRequest:
		return nil, argumentError(fmt.Sprintf("Invalid value for parameter 'count': %d (at most %d tokens per request)", count, hostfactory.MaxTokensPerRequest))
	}
	now := time.Now()
	spec := hostfactory.Spec{HostFactory: hf.String(), Expiration: exp, CIDR: req.GetCidr(), CreatedBy: caller.String()}
	resp := &sowerv1.CreateHostFactoryTokensResponse{}
	toks := make([]hostfactory.Token, 0, count)
	for range count {
		secret, tok, err := hostfactory.New(spec, now)
		if errors.Is(err, hostfactory.ErrInvalid) {
			msg := strings.TrimPrefix(err.Error(), hostfactory.ErrInvalid.Error()+": ")
			if strings.HasPrefix(msg, "Value for parameter expiration") {
				return nil, argumentError(msg)
			}
			return nil, status.Error(codes.InvalidArgument, msg)
		}
		if err != nil {
			return nil, s.toStatus(ctx, "create host factory tokens", err)
		}
		toks = append(toks, tok)
		resp.Tokens = append(resp.Tokens, &sowerv1.HostFactoryToken{Token: secret, Expiration: tok.Expiration.Format(time.RFC3339), Cidr: tok.CIDR})
	}
	if err := s.c.HostFactoryTokens.Create(ctx, toks, now); err != nil {
		if errors.Is(err, etcdstore.ErrTooManyTokens) {
			return nil, status.Error(codes.InvalidArgument, strings.TrimPrefix(err.Error(), etcdstore.ErrTooManyTokens.Error()+": "))
		}
		return nil, s.toStatus(ctx, "store host factory tokens", err)
	}
	s.c.Logger.InfoContext(ctx, "host factory tokens created", "host_factory", hf.String(), "count", count,
		"expiration", exp.UTC().Format(time.RFC3339), "cidr", toks[0].CIDR, "by", caller.String(), "peer", rpcctx.PeerAddr(ctx))
	return resp, nil
}

// RevokeHostFactoryToken deletes a token: 404 when it is unknown or its
// host factory unseen, 403 without update on the host factory.
func (s *Service) RevokeHostFactoryToken(ctx context.Context, req *sowerv1.RevokeHostFactoryTokenRequest) (*sowerv1.RevokeHostFactoryTokenResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	if s.c.HostFactoryTokens == nil {
		return nil, errNoTokens
	}
	// The message never repeats the token: it is a secret.
	errUnknown := status.Error(codes.NotFound, "Host factory token not found: it was revoked, expired and pruned, or never issued")
	if req.GetToken() == "" || len(req.GetToken()) > hostfactory.MaxTokenLength {
		return nil, errUnknown
	}
	tok, err := s.c.HostFactoryTokens.Find(ctx, hostfactory.Hash(req.GetToken()))
	if errors.Is(err, hostfactory.ErrNotFound) {
		return nil, errUnknown
	}
	if err != nil {
		return nil, s.toStatus(ctx, "find host factory token", err)
	}
	hf, err := policy.ParseID(tok.HostFactory)
	if err != nil {
		return nil, s.toStatus(ctx, "revoke host factory token", err)
	}
	g := s.c.Store.Graph()
	if !g.Allowed(caller, "update", hf) {
		if !g.Visible(caller, hf) {
			return nil, errUnknown
		}
		return nil, status.Errorf(codes.PermissionDenied, "revoking tokens of %s needs update on it", hf)
	}
	if err := s.c.HostFactoryTokens.Delete(ctx, tok, caller.String()); err != nil {
		if errors.Is(err, hostfactory.ErrNotFound) {
			return nil, errUnknown
		}
		return nil, s.toStatus(ctx, "revoke host factory token", err)
	}
	s.c.Logger.InfoContext(ctx, "host factory token revoked", "host_factory", hf.String(), "by", caller.String(), "peer", rpcctx.PeerAddr(ctx))
	return &sowerv1.RevokeHostFactoryTokenResponse{}, nil
}

// CreateHostWithToken creates (or, for a host the factory made before,
// rotates the API key of) a host with a host factory token, as Conjur's
// HostBuilder: the host is account:host:<id>, owned by the host factory,
// a member of each of its layers, with the annotations given.
//
// The host is written as an append load into the root policy would write
// it (the same engine, the same fenced commit, the same conflict retries),
// without a new policy version: Conjur records none for it either.
func (s *Service) CreateHostWithToken(ctx context.Context, req *sowerv1.CreateHostWithTokenRequest) (*sowerv1.CreateHostWithTokenResponse, error) {
	if s.c.HostFactoryTokens == nil {
		return nil, errNoTokens
	}
	peer := rpcctx.PeerAddr(ctx)
	tok, err := s.checkHostFactoryToken(ctx, req.GetToken(), peer)
	if err != nil {
		return nil, err
	}
	hf, err := policy.ParseID(tok.HostFactory)
	if err != nil || hf.Kind != policy.KindHostFactory {
		return nil, argumentError("Invalid resource kind: " + hf.Kind)
	}
	id := req.GetId()
	switch {
	case id == "":
		return nil, withReason(codes.InvalidArgument, "parameter_missing", "param is missing or the value is empty: id")
	case strings.HasPrefix(id, "conjur/") || strings.HasPrefix(id, "/conjur/"):
		return nil, argumentError("Invalid id: " + id)
	case len(id) > MaxHostIDLength:
		return nil, argumentError(fmt.Sprintf("Invalid id: a host id is at most %d bytes", MaxHostIDLength))
	case strings.ContainsAny(id, "\x00\r\n"):
		return nil, argumentError("Invalid id: " + strconv.Quote(id))
	}
	if err := checkAnnotations(req.GetAnnotations()); err != nil {
		return nil, err
	}
	host := policy.NewID(s.c.Account, policy.KindHost, strings.TrimPrefix(id, "/"))
	var resp *sowerv1.CreateHostWithTokenResponse
	err = s.locked(ctx, func(ctx context.Context) error {
		var err error
		resp, err = s.enrolLocked(ctx, hf, host, req.GetAnnotations(), peer)
		return err
	})
	if err != nil {
		return nil, s.toStatus(ctx, "host factory host", err)
	}
	return resp, nil
}

// enrolLocked creates host for hf, or rotates its key, holding the policy
// lock: planned against a snapshot, committed through the policy store's
// fenced transaction, planned again when another load got in first.
func (s *Service) enrolLocked(ctx context.Context, hf, host policy.ID, annotations []*sowerv1.ResourceAnnotation, peer string) (*sowerv1.CreateHostWithTokenResponse, error) {
	for attempt := 1; ; attempt++ {
		snap, err := s.c.Store.Begin(ctx)
		if err != nil {
			return nil, err
		}
		g := s.c.Store.Graph()
		if _, ok := g.Resource(hf); !ok {
			s.c.Logger.InfoContext(ctx, "host factory token refused", "reason", "its host factory is gone", "host_factory", hf.String(), "peer", peer)
			return nil, status.Error(codes.Unauthenticated, "authentication failed")
		}
		var commit etcdstore.PolicyCommit
		var apiKey string
		if _, exists := g.Role(host); exists {
			// Conjur rotates the key of a host the factory owns, and
			// refuses any other (one it cannot check the owner of too).
			res, ok := g.Resource(host)
			if !ok || res.Owner != hf {
				return nil, status.Errorf(codes.PermissionDenied, "%s exists and is not owned by %s: a host factory creates its own hosts and rotates only their keys", host, hf)
			}
			key, cred, err := s.c.Keys.Prepare(host.String())
			if err != nil {
				return nil, err
			}
			apiKey = key
			commit = etcdstore.PolicyCommit{ChangeSet: &policy.ChangeSet{Revision: g.Revision()}, Credentials: []*apikey.Credential{cred}}
		} else {
			root := policy.NewID(s.c.Account, policy.KindPolicy, "root")
			cs, err := g.PlanContext(ctx, policy.LoadRequest{Policy: root, Mode: policy.Append, Filename: "host factory " + hf.Name,
				Text: hostPolicy(host.Name, hf.Name, layersOf(g, hf), annotations)})
			if err != nil {
				return nil, err
			}
			commit = etcdstore.PolicyCommit{ChangeSet: cs}
			for _, r := range cs.NewRoles {
				key, cred, err := s.c.Keys.Prepare(r.String())
				if err != nil {
					return nil, err
				}
				commit.Credentials = append(commit.Credentials, cred)
				if r == host {
					apiKey = key
				}
			}
		}
		commit.Audit = []etcdstore.AuditEvent{{Type: "host-factory-host-enrolled", Body: map[string]any{
			"host": host.String(), "host_factory": hf.String(), "rotated": commit.ChangeSet.Empty(), "peer": peer,
		}}}
		_, _, err = s.c.Store.Commit(ctx, snap, commit)
		if errors.Is(err, etcdstore.ErrPolicyConflict) && attempt < commitAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		info, ok := s.c.Store.Graph().Resource(host)
		if !ok {
			return nil, fmt.Errorf("policy service: %s missing after its commit", host)
		}
		s.c.Logger.InfoContext(ctx, "host factory host enrolled", "host", host.String(), "host_factory", hf.String(),
			"rotated", commit.ChangeSet.Empty(), "peer", peer)
		return &sowerv1.CreateHostWithTokenResponse{Host: resourceToProto(info), ApiKey: apiKey}, nil
	}
}

// checkHostFactoryToken finds a presented token and checks it may be used
// now from addr. Every refusal is the same Unauthenticated, as Conjur's
// 401; the log says which check failed.
func (s *Service) checkHostFactoryToken(ctx context.Context, secret, addr string) (hostfactory.Token, error) {
	refuse := func(reason string) (hostfactory.Token, error) {
		s.c.Logger.InfoContext(ctx, "host factory token refused", "reason", reason, "peer", addr)
		return hostfactory.Token{}, status.Error(codes.Unauthenticated, "authentication failed")
	}
	if secret == "" {
		return refuse("no token")
	}
	if len(secret) > hostfactory.MaxTokenLength {
		return refuse("token longer than the limit")
	}
	tok, err := s.c.HostFactoryTokens.Find(ctx, hostfactory.Hash(secret))
	if errors.Is(err, hostfactory.ErrNotFound) {
		return refuse("unknown or revoked token")
	}
	if err != nil {
		return hostfactory.Token{}, s.toStatus(ctx, "find host factory token", err)
	}
	if err := tok.Check(addr, time.Now()); err != nil {
		return refuse(err.Error())
	}
	return tok, nil
}

func checkAnnotations(as []*sowerv1.ResourceAnnotation) error {
	if len(as) > MaxHostAnnotations {
		return argumentError(fmt.Sprintf("a host factory host takes at most %d annotations, not %d", MaxHostAnnotations, len(as)))
	}
	for _, a := range as {
		switch {
		case a.GetName() == "" || len(a.GetName()) > MaxAnnotationNameLength:
			return argumentError(fmt.Sprintf("annotation names are 1 to %d bytes", MaxAnnotationNameLength))
		case len(a.GetValue()) > MaxAnnotationValueLength:
			return argumentError(fmt.Sprintf("annotation %q: a value is at most %d bytes", a.GetName(), MaxAnnotationValueLength))
		}
	}
	return nil
}

// layersOf returns the layers a host factory enrols hosts into: the layers
// its role is a member of.
func layersOf(g *policy.Graph, hf policy.ID) []policy.ID {
	var out []policy.ID
	for _, m := range g.Memberships(hf) {
		if m.Role.Kind == policy.KindLayer {
			out = append(out, m.Role)
		}
	}
	return out
}

// hostPolicy is the policy that declares a host factory's host, loaded
// into root: every name written as a JSON string, which YAML reads as the
// same double-quoted scalar, so no id or annotation can change the
// statement's shape.
func hostPolicy(host, hf string, layers []policy.ID, annotations []*sowerv1.ResourceAnnotation) []byte {
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "- !host\n  id: %s\n  owner: !host-factory %s\n", q(host), q(hf))
	if len(annotations) > 0 {
		b.WriteString("  annotations:\n")
		for _, a := range annotations {
			fmt.Fprintf(&b, "    %s: %s\n", q(a.GetName()), q(a.GetValue()))
		}
	}
	for _, l := range layers {
		fmt.Fprintf(&b, "- !grant\n  role: !layer %s\n  member: !host %s\n", q(l.Name), q(host))
	}
	return []byte(b.String())
}

// hostFactoryFields adds a host factory's layers and, when asked for, its
// tokens (without the tokens themselves) to its resource.
func (s *Service) hostFactoryFields(ctx context.Context, g *policy.Graph, id policy.ID, r *sowerv1.ResourceInfo, withTokens bool) error {
	for _, l := range layersOf(g, id) {
		r.Layers = append(r.Layers, l.String())
	}
	if r.Layers == nil {
		r.Layers = []string{}
	}
	if !withTokens || s.c.HostFactoryTokens == nil {
		return nil
	}
	toks, err := s.c.HostFactoryTokens.List(ctx, id.String())
	if err != nil {
		return err
	}
	now := time.Now()
	for _, t := range toks {
		if t.Expired(now) {
			continue
		}
		r.Tokens = append(r.Tokens, &sowerv1.HostFactoryToken{Expiration: t.Expiration.Format(time.RFC3339), Cidr: t.CIDR})
	}
	return nil
}
