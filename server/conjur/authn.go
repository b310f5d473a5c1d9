package conjur

import (
	"encoding/base64"
	"net/http"
	"strings"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// login is GET /authn/{account}/login: basic auth with the login and its
// API key; answers the API key as text/plain.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="conjur"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	resp, err := h.authn.Login(outgoing(r), &sowerv1.LoginRequest{Account: r.PathValue("account"), Login: user, Secret: pass})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(resp.GetApiKey()))
}

// authenticate is POST /authn/{account}/{login}/authenticate with the API key
// as the body. It answers the access token as JSON, or base64 when the
// client sends Accept-Encoding: base64 (what Conjur's clients put in their
// Authorization header).
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	resp, err := h.authn.Authenticate(outgoing(r), &sowerv1.AuthenticateRequest{
		Account: r.PathValue("account"), Login: r.PathValue("login"), ApiKey: strings.TrimSpace(string(body)),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeToken(w, r, resp.GetToken())
}

// writeToken answers an authentication with the access token, as Conjur
// does: its JSON, or base64 text for "Accept-Encoding: base64".
func writeToken(w http.ResponseWriter, r *http.Request, token []byte) {
	if acceptsBase64(r) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Encoding", "base64")
		_, _ = w.Write([]byte(base64.StdEncoding.EncodeToString(token)))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(token)
}

func acceptsBase64(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, e := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(strings.SplitN(e, ";", 2)[0]), "base64") {
				return true
			}
		}
	}
	return false
}

// rotateAPIKey is PUT /authn/{account}/api_key[?role=kind:id]. With basic
// auth it rotates the caller's own key (the login and current key prove who
// it is); with an access token it rotates the caller's key, or the role's
// named by ?role= when the caller has update on it. The new key is the body.
func (h *Handler) rotateAPIKey(w http.ResponseWriter, r *http.Request) {
	account := r.PathValue("account")
	ctx := outgoing(r)
	if user, pass, ok := r.BasicAuth(); ok {
		tok, err := h.authn.Authenticate(ctx, &sowerv1.AuthenticateRequest{Account: account, Login: user, ApiKey: pass})
		if err != nil {
			writeError(w, err)
			return
		}
		r.Header.Set("Authorization", `Token token="`+base64.StdEncoding.EncodeToString(tok.GetToken())+`"`)
		ctx = outgoing(r)
	}
	resp, err := h.authn.RotateAPIKey(ctx, &sowerv1.RotateAPIKeyRequest{Account: account, Role: r.URL.Query().Get("role")})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(resp.GetApiKey()))
}

// whoami is GET /whoami.
func (h *Handler) whoami(w http.ResponseWriter, r *http.Request) {
	resp, err := h.authn.WhoAmI(outgoing(r), &sowerv1.WhoAmIRequest{})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"account":         resp.GetAccount(),
		"username":        resp.GetUsername(),
		"client_ip":       resp.GetClientIp(),
		"user_agent":      r.UserAgent(),
		"token_issued_at": resp.GetTokenIssuedAt(),
	})
}
