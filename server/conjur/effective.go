package conjur

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// Conjur's maxima of depth and limit (effective_policy_max_depth and
// effective_policy_max_limit); the policy service enforces the same.
const (
	maxEffectiveDepth = 64
	maxEffectiveLimit = 100_000
)

// getEffectivePolicy is GET /policies/{account}/policy/{id}[?depth&limit]
// (`conjur policy fetch`): the effective policy of the branch as YAML, or
// Conjur's JSON statement list when the request's Content-Type (Conjur's
// test, what conjur-api-go sends) or Accept is application/json. A depth or
// limit that is not a number from 0 to its maximum is 400 with Conjur's
// message; a branch larger than the limit is 422.
func (h *Handler) getEffectivePolicy(w http.ResponseWriter, r *http.Request) {
	req := &sowerv1.GetEffectivePolicyRequest{Account: r.PathValue("account"), Identifier: r.PathValue("identifier"), Json: wantsJSON(r)}
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		max  int64
		dst  **int32
	}{{"depth", maxEffectiveDepth, &req.Depth}, {"limit", maxEffectiveLimit, &req.Limit}} {
		v, ok := q[p.name]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v[0], 10, 32)
		if err != nil || n < 0 || n > p.max {
			badRequest(w, fmt.Sprintf("CONJ00163E Param '%s' is '%s' but should be a number from 0 up to %d", p.name, v[0], p.max))
			return
		}
		n32 := int32(n)
		*p.dst = &n32
	}
	resp, err := h.policy.GetEffectivePolicy(outgoing(r), req)
	if err != nil {
		writeError(w, err)
		return
	}
	if req.Json {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "application/x-yaml")
	}
	_, _ = io.WriteString(w, resp.GetText())
}
