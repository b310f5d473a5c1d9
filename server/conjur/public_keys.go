package conjur

import (
	"net/http"
	"strings"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// publicKeys is GET /public_keys/{account}/{kind}/{identifier} (conjur
// pubkeys): the keys a user's public_keys declare in policy, text/plain,
// one a line, sorted, ending in a newline; just a newline for a role with
// none. As Conjur's, it needs no access token.
func (h *Handler) publicKeys(w http.ResponseWriter, r *http.Request) {
	resp, err := h.authn.GetPublicKeys(outgoing(r), &sowerv1.GetPublicKeysRequest{
		Account: r.PathValue("account"), Kind: r.PathValue("kind"), Identifier: r.PathValue("identifier"),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(strings.Join(resp.GetPublicKeys(), "\n") + "\n"))
}
