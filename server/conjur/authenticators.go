package conjur

import (
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	authnapi "github.com/sowerproject/sower/server/api/authn"
)

// authenticatorTypes are the authenticators whose
// PATCH /{authenticator}/{service_id}/{account} (conjur authenticator
// enable/disable) and GET /{authenticator}/{service_id}/{account}/status
// sower answers. Only authn-jwt and authn-k8s log anyone in; the status of
// the others is Conjur's AuthenticatorNotSupported.
var authenticatorTypes = []string{"authn-jwt", "authn-k8s", "authn-oidc", "authn-azure", "authn-ldap", "authn-iam", "authn-cert", "authn-gcp"}

// registerAuthenticators mounts the switch and status routes.
func (h *Handler) registerAuthenticators(mux *http.ServeMux) {
	for _, a := range authenticatorTypes {
		mux.HandleFunc("PATCH /"+a+"/{service_id}/{account}", h.updateAuthenticator(a))
		mux.HandleFunc("GET /"+a+"/{service_id}/{account}/status", h.authenticatorStatus(a))
	}
}

// updateAuthenticator is PATCH /{authenticator}/{service_id}/{account} with
// the form enabled=true|false: 204, as Conjur's. The caller needs update
// on the webservice conjur/{authenticator}/{service_id} (403); a webservice
// that is not declared, or another account, is 401 with the reason in the
// node's log, as Conjur answers them. The switch replicates to every node;
// a Follower answers the PATCH 405 naming the Leader.
func (h *Handler) updateAuthenticator(authenticator string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		form, err := url.ParseQuery(string(body))
		enabled, perr := strconv.ParseBool(form.Get("enabled"))
		if err != nil || perr != nil {
			unprocessable(w, "enabled must be true or false (form-encoded: enabled=true)")
			return
		}
		_, err = h.authn.UpdateAuthenticator(outgoing(r), &sowerv1.UpdateAuthenticatorRequest{
			Account: r.PathValue("account"), Authenticator: authenticator, ServiceId: r.PathValue("service_id"), Enabled: enabled,
		})
		if err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// statusBody is the answer of Conjur's status endpoint.
type statusBody struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// authenticatorStatus is GET /{authenticator}/{service_id}/{account}/status:
// 200 {"status":"ok"}, or Conjur's {"status":"error","error":"#<class:
// message>"} with Conjur's codes: 403 without read on the status
// webservice, 404 for an authenticator sower does not serve, 500 for one
// that is not configured (a webservice missing, switched off, invalid
// settings). A missing or refused access token is 401 with an empty body,
// as Conjur's token check answers it before the controller runs.
func (h *Handler) authenticatorStatus(authenticator string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := h.authn.GetAuthenticatorStatus(outgoing(r), &sowerv1.GetAuthenticatorStatusRequest{
			Account: r.PathValue("account"), Authenticator: authenticator, ServiceId: r.PathValue("service_id"),
		})
		if err == nil {
			writeJSON(w, http.StatusOK, statusBody{Status: resp.GetStatus()})
			return
		}
		st, _ := status.FromError(err)
		var class string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == authnapi.StatusErrorDomain {
				class = info.GetMetadata()["class"]
			}
		}
		if class == "" {
			writeError(w, err) // 401, 503, a refused token's origin
			return
		}
		code := http.StatusInternalServerError
		switch st.Code() {
		case codes.PermissionDenied:
			code = http.StatusForbidden
		case codes.NotFound:
			code = http.StatusNotFound
		case codes.Unimplemented:
			code = http.StatusNotImplemented
		}
		// Conjur renders the exception's inspect: #<Class: message>.
		writeJSON(w, code, statusBody{Status: "error", Error: "#<" + class + ": " + st.Message() + ">"})
	}
}
