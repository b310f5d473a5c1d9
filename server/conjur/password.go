package conjur

import (
	"net/http"
	"strings"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// changePassword is PUT /authn/{account}/password (conjur user
// change-password): basic auth with the user's login and its current API
// key or password, the new password as the body; 204. As Conjur: an access
// token is not enough (401 "Credential strength is insufficient"), nor is
// ?role= naming someone else (401), a host is 403, and a password that
// breaks the rules is 422 validation_failed with Conjur's CONJ00046E.
func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: errorDetail{Code: "unauthorized",
			Message: "Credential strength is insufficient"}})
		return
	}
	account := r.PathValue("account")
	if role := r.URL.Query().Get("role"); role != "" && !sameRole(account, role, user) {
		// Conjur: "Operation attempted against foreign user", no body.
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	_, err := h.authn.ChangePassword(outgoing(r), &sowerv1.ChangePasswordRequest{
		Account: account, Login: user, Secret: pass, NewPassword: string(body),
	})
	if err != nil {
		if info, ok := errorInfo(err, "validation_failed"); ok {
			writeValidationFailed(w, info)
			return
		}
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sameRole reports whether role ("kind:id" or "account:kind:id") names the
// role that logs in as login ("alice", "host/app").
func sameRole(account, role, login string) bool {
	kind, id := "user", login
	if rest, ok := strings.CutPrefix(login, "host/"); ok {
		kind, id = "host", rest
	}
	return role == kind+":"+id || role == account+":"+kind+":"+id
}
