package conjur

import (
	"net/http"
	"net/url"
	"strings"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// authenticateJWT is POST /authn-jwt/{service_id}/{account}[/{host}]/authenticate
// with the form body jwt=<token>: the JWT (a Kubernetes service-account
// token, say) is exchanged for an access token, JSON or, with
// Accept-Encoding: base64, base64. Every refusal is 401 with an empty body,
// as Conjur answers; the node's log and audit trail say which check failed.
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
	if err != nil {
		writeError(w, err)
		return
	}
	writeToken(w, r, resp.GetToken())
}
