package conjur

import (
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// authenticatorTypes are the authenticators whose
// PATCH /{authenticator}/{service_id}/{account} (conjur authenticator
// enable/disable) sower answers.
var authenticatorTypes = []string{"authn-jwt", "authn-k8s", "authn-oidc", "authn-azure", "authn-ldap", "authn-iam", "authn-cert"}

// updateAuthenticator is PATCH /{authenticator}/{service_id}/{account} with
// the form enabled=true|false. As in Conjur the caller needs update on the
// authenticator's webservice (conjur/{authenticator}/{service_id}); Conjur
// answers 204. In sower an authenticator is on while its webservice is in
// policy: enabling one that is declared is 204, disabling is refused with
// what to do instead.
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
		webservice := "conjur/" + authenticator + "/" + r.PathValue("service_id")
		resp, err := h.policy.CheckPermission(outgoing(r), &sowerv1.CheckPermissionRequest{
			Account: r.PathValue("account"), Kind: "webservice", Identifier: webservice, Privilege: "update",
		})
		switch {
		case status.Code(err) == codes.NotFound:
			writeJSON(w, http.StatusNotFound, errorBody{Error: errorDetail{Code: "not_found",
				Message: "Webservice '" + webservice + "' not found in account '" + r.PathValue("account") + "': declare the authenticator's webservice in policy to enable it"}})
		case err != nil:
			writeError(w, err)
		case !resp.GetAllowed():
			writeError(w, status.Errorf(codes.PermissionDenied, "enabling or disabling %s needs update on webservice %s", authenticator, webservice))
		case !enabled:
			unprocessable(w, "sower has no switch for an authenticator: it is on while its webservice "+webservice+" is in policy; delete the webservice (or deny its hosts authenticate) to turn it off")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}
