package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
	"github.com/sowerproject/sower/authn/k8s"
	"github.com/sowerproject/sower/authn/token"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// openDataKey loads the data key ring from <data-dir>/data.key, creating it
// (0600) when create is set (a node without etcd data yet). The key never
// leaves the data dir: every secret in etcd is sealed under it.
func openDataKey(path string, create bool) (*pki.Keyring, error) {
	kr, err := pki.LoadKeyring(path)
	if err == nil {
		return kr, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server: data key %s: %w", path, err)
	}
	if !create {
		return nil, fmt.Errorf("server: data key %s is missing but the data dir holds etcd data sealed under it; restore the file from backup", path)
	}
	kr, err = pki.GenerateKeyring()
	if err != nil {
		return nil, fmt.Errorf("server: generate data key: %w", err)
	}
	if err := kr.CreateFile(path); err != nil {
		return nil, fmt.Errorf("server: write data key %s: %w", path, err)
	}
	return kr, nil
}

// authnParts are a node's authentication engines, the secret store that
// holds the JWT authenticators' settings, and the audit trail.
type authnParts struct {
	keys    *apikey.Manager
	tokens  *token.Service
	limiter *authn.Limiter
	secrets *etcdstore.Secrets
	audit   *etcdstore.AuthnAudit
	// trail is the audit trail; recorder this node's Recorder of every
	// other event (secret reads, seeds, membership, data keys).
	trail    *etcdstore.AuditTrail
	recorder *audit.Queue
	pruned   func(etcdstore.Pruned)
	// creds, signing and switches are written only by the Leader in its
	// term (fenceWrites, once the election runs).
	creds    *etcdstore.Credentials
	signing  *etcdstore.SigningKeys
	switches *etcdstore.AuthenticatorSwitches
	closers  []func()
	lg       *slog.Logger
}

// fenceWrites sends every authentication write (credentials, signing keys,
// secrets, the audit trail's prune) through the election's fenced client
// w from now on.
func (a *authnParts) fenceWrites(w *clientv3.Client) {
	a.creds.FenceWrites(w)
	a.signing.FenceWrites(w)
	a.secrets.FenceWrites(w)
	a.switches.FenceWrites(w)
	a.trail.FencePrune(w)
}

// onClose adds fn to what run calls when it ends.
func (a *authnParts) onClose(fn func()) { a.closers = append(a.closers, fn) }

// run follows secret changes (for the JWT authenticators' caches) and
// writes the audit trail until ctx ends.
func (a *authnParts) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.secrets.Run(gctx) })
	g.Go(func() error { return a.audit.Run(gctx) })
	g.Go(func() error { return a.recorder.Run(gctx) })
	g.Go(func() error { return a.pruneAudit(gctx) })
	err := g.Wait()
	for _, fn := range a.closers {
		fn()
	}
	return err
}

// auditPruneInterval is how often the Leader applies the audit trail's
// retention.
const auditPruneInterval = time.Minute

// pruneAudit applies the trail's retention every auditPruneInterval; the
// prune is fenced (fenceWrites): only the Leader deletes.
func (a *authnParts) pruneAudit(ctx context.Context) error {
	t := time.NewTicker(auditPruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p, err := a.trail.Prune(ctx)
		if err != nil && ctx.Err() == nil {
			a.lg.Warn("cannot prune the audit trail", "err", err)
		}
		if p.Age+p.Count > 0 {
			cfg := a.trail.Config()
			a.lg.Info("pruned the audit trail", "older_than_max_age", p.Age, "beyond_max_events", p.Count, "max_age", cfg.MaxAge, "max_events", cfg.MaxEvents)
			if a.pruned != nil {
				a.pruned(p)
			}
		}
	}
}

// WithKubernetes gives the node a Kubernetes API client (in-cluster, say)
// for authn-k8s services whose variables do not name an API server.
func WithKubernetes(k k8s.API) Option { return func(s *Server) { s.kube = k } }

// openAuthn loads (or, on a new cluster, creates) the API-key pepper and the
// token signing key ring, and opens the secret store and the audit trail.
func openAuthn(ctx context.Context, cli *clientv3.Client, sealer *pki.Keyring, node string, limits authn.LimiterConfig, retention etcdstore.TrailConfig, lg *slog.Logger) (*authnParts, error) {
	pepper, err := loadOrCreatePepper(ctx, cli, sealer)
	if err != nil {
		return nil, err
	}
	creds, signing := etcdstore.NewCredentials(cli), etcdstore.NewSigningKeys(cli)
	keys, err := apikey.New(apikey.Config{Store: creds, Pepper: pepper})
	if err != nil {
		return nil, err
	}
	tokens, err := token.New(token.Config{Keys: signing, Sealer: sealer})
	if err != nil {
		return nil, err
	}
	if err := tokens.EnsureKey(ctx); err != nil {
		return nil, fmt.Errorf("server: token signing key: %w", err)
	}
	secrets, err := etcdstore.NewSecrets(cli, sealer, etcdstore.SecretsConfig{Logger: lg})
	if err != nil {
		return nil, err
	}
	trail := etcdstore.NewAuditTrail(cli, retention)
	rec, err := audit.NewQueue(audit.QueueConfig{Node: node, Trail: trail, Logger: lg})
	if err != nil {
		return nil, err
	}
	return &authnParts{keys: keys, tokens: tokens, limiter: authn.NewLimiter(limits), secrets: secrets,
		audit: etcdstore.NewAuthnAudit(trail, etcdstore.AuditConfig{Node: node, Logger: lg}),
		trail: trail, recorder: rec, lg: lg,
		creds: creds, signing: signing, switches: etcdstore.NewAuthenticatorSwitches(cli)}, nil
}

func loadOrCreatePepper(ctx context.Context, cli *clientv3.Client, sealer authn.Sealer) ([]byte, error) {
	resp, err := cli.Get(ctx, etcdstore.PepperKey)
	if err != nil {
		return nil, fmt.Errorf("server: read API-key pepper: %w", err)
	}
	if len(resp.Kvs) == 1 {
		p, err := apikey.OpenPepper(sealer, resp.Kvs[0].Value)
		if err != nil {
			return nil, fmt.Errorf("server: open API-key pepper (is data.key the one this cluster was created with?): %w", err)
		}
		return p, nil
	}
	p, err := apikey.NewPepper(nil)
	if err != nil {
		return nil, err
	}
	sealed, err := apikey.SealPepper(sealer, p)
	if err != nil {
		return nil, err
	}
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(etcdstore.PepperKey), "=", 0)).
		Then(clientv3.OpPut(etcdstore.PepperKey, string(sealed))).
		Else(clientv3.OpGet(etcdstore.PepperKey)).Commit()
	if err != nil {
		return nil, fmt.Errorf("server: store API-key pepper: %w", err)
	}
	if !txn.Succeeded {
		return apikey.OpenPepper(sealer, txn.Responses[0].GetResponseRange().Kvs[0].Value)
	}
	return p, nil
}

// adminBootstrapper gives the account's admin user its first API key.
type adminBootstrapper struct{ keys *apikey.Manager }

func (b adminBootstrapper) AdminCredential(ctx context.Context, account string) ([]byte, error) {
	key, err := b.keys.Rotate(ctx, account+":user:admin")
	return []byte(key), err
}

// publicMethods need no access token: what a caller uses before it has one.
var publicMethods = map[string]bool{
	"/grpc.health.v1.Health/Check":                                   true,
	"/grpc.health.v1.Health/Watch":                                   true,
	"/grpc.health.v1.Health/List":                                    true,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
	"/sower.v1.StatusService/GetStatus":                              true,
	"/sower.v1.AuthnService/Login":                                   true,
	"/sower.v1.AuthnService/Authenticate":                            true,
	"/sower.v1.AuthnService/AuthenticateJWT":                         true,
	// ChangePassword authenticates with the login and its current API
	// key or password, as Conjur's PUT /authn/{account}/password.
	"/sower.v1.AuthnService/ChangePassword": true,
	// Public keys are public, as in Conjur.
	"/sower.v1.AuthnService/GetPublicKeys": true,
	// A joining Standby has no token: the seed's certificate and
	// enrollment token authenticate it (server/api/cluster).
	"/sower.v1.ClusterService/GetLeader":         true,
	"/sower.v1.ClusterService/Enroll":            true,
	"/sower.v1.ClusterService/AbandonEnrollment": true,
	// A Follower replicates with its seed's certificate, which the
	// service checks (server/api/replication).
	"/sower.v1.ReplicationService/Follow": true,
	// And pushes its audit events with it.
	"/sower.v1.ReplicationService/PushAudit": true,
	// A host factory token authenticates a host's enrolment; the policy
	// service checks it.
	"/sower.v1.PolicyService/CreateHostWithToken": true,
}

// authenticator is the gRPC interceptor that turns the "authorization"
// metadata into the caller's authn.Identity. It is the only place access
// tokens are checked; REST calls reach it through the gateway.
type authenticator struct {
	tokens  *token.Service
	account string
	lg      *slog.Logger
	// audit records refused tokens; nil records nothing.
	audit *etcdstore.AuthnAudit
}

func (a *authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if publicMethods[method] {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	raw, err := token.FromMetadata(md)
	if err == nil {
		var claims token.Claims
		if claims, err = a.tokens.Verify(ctx, raw); err == nil {
			id, perr := authn.ParseLogin(a.account, claims.Subject)
			if perr != nil {
				err = authn.Refuse(authn.ReasonUnknownIdentity, "token subject %q is not a login", claims.Subject)
			} else if oerr := tokenOrigin(claims, rpcctx.PeerAddr(ctx)); oerr != nil {
				return nil, a.ipRejected(ctx, method, id, oerr)
			} else {
				id.IssuedAt = claims.IssuedAt
				return authn.NewContext(ctx, id), nil
			}
		}
	}
	reason, detail := authn.ReasonOf(err)
	a.lg.Info("access token refused", "method", method, "reason", reason, "detail", detail, "peer", rpcctx.PeerAddr(ctx))
	if a.audit != nil {
		// A refused token names nobody it can be trusted for; the detail
		// carries the subject of an expired one.
		if reason == "" {
			reason = authn.ReasonUnavailable
		}
		a.audit.Record(etcdstore.AuthnEvent{Outcome: etcdstore.OutcomeFailure, Authenticator: "access-token",
			Source: rpcctx.PeerAddr(ctx), Reason: string(reason), Detail: detail, Method: method})
	}
	if errors.Is(err, authn.ErrUnauthenticated) {
		return nil, status.Error(codes.Unauthenticated, "authentication required: send a valid access token as `Authorization: Token token=\"<base64>\"`")
	}
	a.lg.Error("verify access token", "err", err)
	return nil, status.Error(codes.Unavailable, "cannot verify access tokens right now; try again")
}

// tokenOrigin checks the token's cidr claim (set for roles with
// restricted_to) against the caller's address, as conjur-rack's token
// middleware does.
func tokenOrigin(claims token.Claims, addr string) error {
	if len(claims.CIDR) == 0 {
		return nil
	}
	nets, err := authn.ParseNetworks(claims.CIDR)
	if err != nil {
		return authn.Refuse(authn.ReasonOrigin, "token cidr claim does not parse: %v", err)
	}
	return authn.CheckOrigin(nets, addr)
}

// ipRejected logs, audits and answers a valid token used from outside its
// cidr claim: 403 "IP address rejected", conjur-rack's answer (which the
// Conjur adapter writes as text/plain, as conjur-rack does).
func (a *authenticator) ipRejected(ctx context.Context, method string, id authn.Identity, err error) error {
	reason, detail := authn.ReasonOf(err)
	a.lg.Info("access token refused", "method", method, "reason", reason, "detail", detail, "peer", rpcctx.PeerAddr(ctx))
	if a.audit != nil {
		a.audit.Record(etcdstore.AuthnEvent{Outcome: etcdstore.OutcomeFailure, Authenticator: "access-token", Identity: id.RoleID(),
			Source: rpcctx.PeerAddr(ctx), Reason: string(reason), Detail: detail, Method: method})
	}
	st := status.New(codes.PermissionDenied, "IP address rejected")
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: "ip_address_rejected", Domain: ipRejectedDomain}); derr == nil {
		st = d
	}
	return st.Err()
}

// ipRejectedDomain marks the ErrorInfo of a token refused for its origin;
// server/conjur answers such an error as conjur-rack does.
const ipRejectedDomain = "conjur-rack"

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &identityStream{ServerStream: ss, ctx: ctx})
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
