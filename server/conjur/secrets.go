package conjur

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// setSecret is POST /secrets/{account}/{kind}/{identifier}: the body is the
// new value, raw. Conjur answers 201 with no body.
func (h *Handler) setSecret(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	_, err := h.secrets.SetSecret(outgoing(r), &sowerv1.SetSecretRequest{
		Account: r.PathValue("account"), Kind: r.PathValue("kind"), Identifier: r.PathValue("identifier"), Value: body,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// getSecret is GET /secrets/{account}/{kind}/{identifier}[?version=N]: the
// value, raw, with the variable's conjur/mime_type as its content type.
func (h *Handler) getSecret(w http.ResponseWriter, r *http.Request) {
	var version int64
	if v, ok := r.URL.Query()["version"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: errorDetail{Code: "unprocessable_entity", Message: "invalid type for parameter 'version'"}})
			return
		}
		if n <= 0 {
			// Conjur looks the number up among the versions and finds none.
			writeJSON(w, http.StatusNotFound, errorBody{Error: errorDetail{Code: "not_found", Message: "Requested version does not exist"}})
			return
		}
		version = n
	}
	resp, err := h.secrets.GetSecret(outgoing(r), &sowerv1.GetSecretRequest{
		Account: r.PathValue("account"), Kind: r.PathValue("kind"), Identifier: r.PathValue("identifier"), Version: version,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", resp.GetMimeType())
	_, _ = w.Write(resp.GetValue())
}

// batchSecrets is GET /secrets?variable_ids=acct:variable:a,acct:variable:b:
// a JSON object of id → value, every value or none. With
// Accept-Encoding: base64 the values are base64 and the response says
// Content-Encoding: base64; without it a value that is not UTF-8 cannot be
// put in JSON and the answer is 406, as Conjur's.
func (h *Handler) batchSecrets(w http.ResponseWriter, r *http.Request) {
	// Conjur splits on commas, drops trailing empty items (Ruby's split)
	// and refuses an empty list or an empty item with its ArgumentError.
	ids := strings.Split(r.URL.Query().Get("variable_ids"), ",")
	for len(ids) > 0 && strings.TrimSpace(ids[len(ids)-1]) == "" {
		ids = ids[:len(ids)-1]
	}
	for i := range ids {
		if ids[i] = strings.TrimSpace(ids[i]); ids[i] == "" {
			ids = nil
			break
		}
	}
	if len(ids) == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: errorDetail{Code: "argument_error", Message: "variable_ids"}})
		return
	}
	resp, err := h.secrets.BatchGetSecrets(outgoing(r), &sowerv1.BatchGetSecretsRequest{VariableIds: ids})
	if err != nil {
		writeError(w, err)
		return
	}
	out := make(map[string]string, len(resp.GetValues()))
	b64 := acceptsBase64(r)
	for id, v := range resp.GetValues() {
		switch {
		case b64:
			out[id] = base64.StdEncoding.EncodeToString(v)
		case !utf8.Valid(v):
			writeJSON(w, http.StatusNotAcceptable, errorBody{Error: errorDetail{Code: "not_acceptable",
				Message: "Issue encoding secret into JSON format, try including 'Accept-Encoding: base64' header in request."}})
			return
		default:
			out[id] = string(v)
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if b64 {
		w.Header().Set("Content-Encoding", "base64")
	}
	_, _ = w.Write(body)
}
