package conjur

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// maxBody bounds request bodies that are read whole (API keys, forms).
// Policy bodies have their own, larger limit.
const maxBody = 1 << 20

// Handler serves Conjur's REST API by calling the node's gRPC services.
type Handler struct {
	authn  sowerv1.AuthnServiceClient
	seed   sowerv1.SeedServiceClient
	policy sowerv1.PolicyServiceClient
	// secrets serves /secrets.
	secrets sowerv1.SecretsServiceClient
}

// New returns a Handler calling through conn.
func New(conn grpc.ClientConnInterface) (*Handler, error) {
	if conn == nil {
		return nil, errors.New("conjur: gRPC connection is required")
	}
	return &Handler{
		authn: sowerv1.NewAuthnServiceClient(conn), seed: sowerv1.NewSeedServiceClient(conn),
		policy: sowerv1.NewPolicyServiceClient(conn), secrets: sowerv1.NewSecretsServiceClient(conn),
	}, nil
}

// Register mounts Conjur's routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /authn/{account}/login", h.login)
	mux.HandleFunc("POST /authn/{account}/{login}/authenticate", h.authenticate)
	mux.HandleFunc("PUT /authn/{account}/api_key", h.rotateAPIKey)
	mux.HandleFunc("GET /whoami", h.whoami)
	mux.HandleFunc("POST /configuration/{account}/seed/follower", h.followerSeed)
	mux.HandleFunc("POST /configuration/{account}/seed/standby", h.standbySeed)
	mux.HandleFunc("GET /{$}", h.root)
	mux.HandleFunc("POST /policies/{account}/policy/{identifier...}", h.loadPolicy(sowerv1.LoadMode_LOAD_MODE_APPEND))
	mux.HandleFunc("PATCH /policies/{account}/policy/{identifier...}", h.loadPolicy(sowerv1.LoadMode_LOAD_MODE_UPDATE))
	mux.HandleFunc("PUT /policies/{account}/policy/{identifier...}", h.loadPolicy(sowerv1.LoadMode_LOAD_MODE_REPLACE))
	mux.HandleFunc("GET /policies/{account}/policy/{identifier...}", h.getPolicy)
	mux.HandleFunc("GET /resources/{account}", h.listResources)
	mux.HandleFunc("GET /resources/{account}/{$}", h.listResources)
	mux.HandleFunc("GET /resources/{account}/{kind}", h.listResources)
	mux.HandleFunc("GET /resources/{account}/{kind}/{identifier...}", h.resource)
	mux.HandleFunc("GET /roles/{account}/{kind}/{identifier...}", h.role)
	mux.HandleFunc("POST /authn-jwt/{service_id}/{account}/authenticate", h.authenticateJWT)
	mux.HandleFunc("POST /authn-jwt/{service_id}/{account}/{host}/authenticate", h.authenticateJWT)
	mux.HandleFunc("POST /authn-k8s/{service_id}/{account}/{host}/authenticate", h.authenticateJWT)
	mux.HandleFunc("POST /authn-k8s/{service_id}/inject_client_cert", h.injectClientCert)
	mux.HandleFunc("POST /secrets/{account}/{kind}/{identifier...}", h.setSecret)
	mux.HandleFunc("GET /secrets/{account}/{kind}/{identifier...}", h.getSecret)
	mux.HandleFunc("GET /secrets", h.batchSecrets)
	mux.HandleFunc("GET /secrets/{$}", h.batchSecrets) // conjur-api-go's form
}

// outgoing carries the caller's Authorization header and address to gRPC,
// as the /v1 gateway does.
func outgoing(r *http.Request) context.Context {
	md := metadata.MD{}
	if a := r.Header.Get("Authorization"); a != "" {
		md.Set("authorization", a)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		md.Set("x-forwarded-for", host)
	}
	return metadata.NewOutgoingContext(r.Context(), md)
}

// readBody reads a small body whole, refusing one over maxBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		badRequest(w, "request body is unreadable or larger than 1 MiB")
		return nil, false
	}
	return b, true
}
