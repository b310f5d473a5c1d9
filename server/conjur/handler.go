package conjur

import (
	"context"
	"errors"
	"fmt"
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
	mux.HandleFunc("PUT /authn/{account}/password", h.changePassword)
	mux.HandleFunc("GET /whoami", h.whoami)
	mux.HandleFunc("POST /configuration/{account}/seed/follower", h.followerSeed)
	mux.HandleFunc("POST /configuration/{account}/seed/standby", h.standbySeed)
	mux.HandleFunc("GET /{$}", h.root)
	mux.HandleFunc("POST /policies/{account}/policy/{identifier...}", h.loadPolicy(sowerv1.LoadMode_LOAD_MODE_APPEND))
	mux.HandleFunc("PATCH /policies/{account}/policy/{identifier...}", h.loadPolicy(sowerv1.LoadMode_LOAD_MODE_UPDATE))
	mux.HandleFunc("PUT /policies/{account}/policy/{identifier...}", h.loadPolicy(sowerv1.LoadMode_LOAD_MODE_REPLACE))
	mux.HandleFunc("GET /policies/{account}/policy/{identifier...}", h.getPolicy)
	mux.HandleFunc("GET /resources", h.listAccountResources)
	mux.HandleFunc("GET /resources/{$}", h.listAccountResources)
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
	h.registerAuthenticators(mux)
	mux.HandleFunc("POST /host_factory_tokens", h.createHostFactoryTokens)
	mux.HandleFunc("DELETE /host_factory_tokens/{token}", h.revokeHostFactoryToken)
	mux.HandleFunc("POST /host_factories/hosts", h.createHostWithToken)
	// Conjur serves issuers only with its dynamic secrets feature on;
	// without it the routes do not exist. sower has no dynamic secrets.
	mux.HandleFunc("/issuers/{account}", h.noIssuers)
	mux.HandleFunc("/issuers/{account}/{identifier...}", h.noIssuers)
	// Conjur endpoints sower does not provide, answered with what to do.
	mux.HandleFunc("GET /public_keys/{account}/{kind}/{identifier...}", h.publicKeys)
	// Everything else outside /v1 is a route Conjur does not have.
	mux.HandleFunc("/", h.unknownRoute)
}

// unknownRoute answers a path (or a method on a path) that is not one of
// Conjur's with Conjur's error JSON, so a Conjur client prints a message.
func (h *Handler) unknownRoute(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: errorDetail{Code: "not_found",
		Message: fmt.Sprintf("No route matches [%s] %q: see docs/rest-api.md for the Conjur endpoints sower serves, and /openapi.json for /v1", r.Method, r.URL.Path)}})
}

// noIssuers answers the issuers API as a Conjur without dynamic secrets
// does (the routes are absent: 404), saying why.
func (h *Handler) noIssuers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: errorDetail{Code: "not_found",
		Message: "issuers are part of Conjur's dynamic secrets, which sower does not provide: store static secrets in variables instead"}})
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

// missing answers a Conjur endpoint sower does not provide: 404, as a
// Conjur with the feature off (its route absent), with msg saying what to
// do instead.
func missing(msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: errorDetail{Code: "not_found", Message: msg}})
	}
}
