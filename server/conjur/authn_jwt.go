package conjur

import (
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// authenticateJWT is POST /authn-jwt/{service_id}/{account}[/{host}]/authenticate
// with the form body jwt=<token>: the JWT (a Kubernetes service-account
// token, say) is exchanged for an access token, JSON or, with
// Accept-Encoding: base64, base64. Every refusal is 401 with an empty body,
// as Conjur answers, except a host that exists but lacks authenticate on
// the webservice, which is 403 with an empty body (Conjur's Forbidden); the
// node's log and audit trail say which check failed.
//
// It serves POST /authn-k8s/{service_id}/{account}/{host}/authenticate too:
// there Conjur expects the client certificate that inject_client_cert
// issued, which sower does not build; sower takes the service-account token
// as jwt= instead (run conjur-authn-k8s-client in authn-jwt mode, or
// sower-authn-client). A request without jwt= is refused 401, as Conjur
// refuses one without a certificate.
func (h *Handler) authenticateJWT(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	// Conjur reads the body as a form whatever its content type says.
	form, err := url.ParseQuery(string(body))
	if err != nil {
		form = url.Values{}
	}
	resp, err := h.authn.AuthenticateJWT(outgoing(r), &sowerv1.AuthenticateJWTRequest{
		ServiceId: r.PathValue("service_id"), Account: r.PathValue("account"),
		Host: r.PathValue("host"), Jwt: strings.TrimSpace(form.Get("jwt")),
	})
	if status.Code(err) == codes.PermissionDenied {
		// Conjur's Forbidden: 403 with an empty body.
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeToken(w, r, resp.GetToken())
}

// injectClientCert is Conjur's POST /authn-k8s/{service_id}/inject_client_cert,
// the first step of its certificate flow (a CSR; Conjur copies a client
// certificate into the pod through pods/exec). sower does not build it: it
// answers 501 saying which client mode to use instead.
func (h *Handler) injectClientCert(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotImplemented, errorBody{Error: errorDetail{Code: "not_implemented",
		Message: "sower does not issue Kubernetes client certificates (inject_client_cert); run the authenticator client in JWT mode: " +
			"POST the pod's service-account token as jwt= to /authn-jwt/{service_id}/{account}/{host}/authenticate (or /authn-k8s/.../authenticate)"}})
}
