package conjur

import (
	"net/http"
	"strconv"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// role is GET /roles/{account}/{kind}/{identifier}: the role with its
// members, or with ?members its direct members (search, limit, offset,
// count), with ?memberships the roles it belongs to directly (search,
// filter, count), with ?all every role it belongs to (filter, count).
func (h *Handler) role(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	account, kind, identifier := r.PathValue("account"), r.PathValue("kind"), r.PathValue("identifier")
	_, counting := q["count"]
	if c := q.Get("count"); c != "" {
		counting, _ = strconv.ParseBool(c)
	}
	filter := q["filter"]
	if len(filter) == 0 {
		filter = q["filter[]"]
	}
	switch {
	case q.Has("all"):
		resp, err := h.policy.ListRoleMemberships(outgoing(r), &sowerv1.ListRoleMembershipsRequest{
			Account: account, Kind: kind, Identifier: identifier, All: true, Filter: filter,
		})
		if err != nil {
			writeError(w, err)
			return
		}
		if counting {
			writeJSON(w, http.StatusOK, map[string]int{"count": len(resp.GetRoleIds())})
			return
		}
		writeJSON(w, http.StatusOK, nonNil(resp.GetRoleIds()))
	case q.Has("memberships"):
		resp, err := h.policy.ListRoleMemberships(outgoing(r), &sowerv1.ListRoleMembershipsRequest{
			Account: account, Kind: kind, Identifier: identifier, Search: q.Get("search"), Filter: filter,
		})
		if err != nil {
			writeError(w, err)
			return
		}
		if counting {
			writeJSON(w, http.StatusOK, map[string]int{"count": len(resp.GetMemberships())})
			return
		}
		writeJSON(w, http.StatusOK, membershipsJSON(resp.GetMemberships()))
	case q.Has("graph"):
		resp, err := h.policy.GetRoleGraph(outgoing(r), &sowerv1.GetRoleGraphRequest{Account: account, Kind: kind, Identifier: identifier})
		if err != nil {
			writeError(w, err)
			return
		}
		out := make([]map[string]string, 0, len(resp.GetEdges()))
		for _, e := range resp.GetEdges() {
			out = append(out, map[string]string{"parent": e.GetParent(), "child": e.GetChild()})
		}
		writeJSON(w, http.StatusOK, out)
	case q.Has("members"):
		limit, offset, ok := page(w, q)
		if !ok {
			return
		}
		resp, err := h.policy.ListRoleMembers(outgoing(r), &sowerv1.ListRoleMembersRequest{
			Account: account, Kind: kind, Identifier: identifier, Search: q.Get("search"), Limit: limit, Offset: offset,
		})
		if err != nil {
			writeError(w, err)
			return
		}
		if counting {
			writeJSON(w, http.StatusOK, map[string]int64{"count": resp.GetCount()})
			return
		}
		writeJSON(w, http.StatusOK, membershipsJSON(resp.GetMembers()))
	default:
		resp, err := h.policy.GetRole(outgoing(r), &sowerv1.GetRoleRequest{Account: account, Kind: kind, Identifier: identifier})
		if err != nil {
			writeError(w, err)
			return
		}
		out := roleJSON{ID: resp.GetId(), Policy: resp.GetPolicy(), Members: membershipsJSON(resp.GetMembers())}
		if kind == "user" || kind == "host" {
			rt := nonNil(resp.GetRestrictedTo())
			out.RestrictedTo = &rt
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// roleJSON is a role as Conjur shows it.
type roleJSON struct {
	ID           string           `json:"id"`
	Policy       string           `json:"policy,omitempty"`
	Members      []membershipJSON `json:"members"`
	RestrictedTo *[]string        `json:"restricted_to,omitempty"`
}

// membershipJSON is Conjur's role_membership object.
type membershipJSON struct {
	AdminOption bool   `json:"admin_option"`
	Member      string `json:"member"`
	Ownership   bool   `json:"ownership"`
	Role        string `json:"role"`
	Policy      string `json:"policy,omitempty"`
}

func membershipsJSON(ms []*sowerv1.RoleMembership) []membershipJSON {
	out := make([]membershipJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, membershipJSON{AdminOption: m.GetAdminOption(), Member: m.GetMember(), Ownership: m.GetOwnership(),
			Role: m.GetRole(), Policy: m.GetPolicy()})
	}
	return out
}
