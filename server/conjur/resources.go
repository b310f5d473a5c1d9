package conjur

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// listResources is GET /resources/{account}[/{kind}] with Conjur's filters:
// kind, search, limit, offset, count=true ({"count":N}) and role or
// acting_as (list as a role the caller holds).
func (h *Handler) listResources(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind := r.PathValue("kind")
	if kind == "" {
		kind = q.Get("kind")
	}
	req := &sowerv1.ListResourcesRequest{Account: r.PathValue("account"), Kind: kind, Search: q.Get("search"), Role: q.Get("role")}
	if req.Role == "" {
		req.Role = q.Get("acting_as")
	}
	var ok bool
	if req.Limit, req.Offset, ok = page(w, q); !ok {
		return
	}
	req.CountOnly, _ = strconv.ParseBool(q.Get("count"))
	resp, err := h.policy.ListResources(outgoing(r), req)
	if err != nil {
		writeError(w, err)
		return
	}
	if req.CountOnly {
		writeJSON(w, http.StatusOK, map[string]int64{"count": resp.GetCount()})
		return
	}
	out := make([]resourceJSON, 0, len(resp.GetResources()))
	for _, res := range resp.GetResources() {
		out = append(out, toResourceJSON(res))
	}
	writeJSON(w, http.StatusOK, out)
}

// listAccountResources is GET /resources: Conjur lists every account's
// resources; a cluster serves one account, the caller's.
func (h *Handler) listAccountResources(w http.ResponseWriter, r *http.Request) {
	who, err := h.authn.WhoAmI(outgoing(r), &sowerv1.WhoAmIRequest{})
	if err != nil {
		writeError(w, err)
		return
	}
	r.SetPathValue("account", who.GetAccount())
	h.listResources(w, r)
}

// page reads ?limit and ?offset as Conjur does: a limit that is not a
// positive integer (0 included) or an offset that is not an integer of 0 or
// more is 422 with Conjur's message. Conjur pages by 10 when only an offset
// is given.
func page(w http.ResponseWriter, q url.Values) (limit, offset int32, ok bool) {
	l, lok, err := intParam(q, "limit")
	if err != nil || (lok && l <= 0) {
		unprocessable(w, "'limit' contains an invalid value. 'limit' must be a positive integer.")
		return 0, 0, false
	}
	o, ook, err := intParam(q, "offset")
	if err != nil {
		unprocessable(w, "'offset' contains an invalid value. 'offset' must be an integer greater than or equal to 0.")
		return 0, 0, false
	}
	if ook && !lok {
		l = 10
	}
	return l, o, true
}

// intParam reads a parameter of digits; present but empty is an error, as
// in Conjur.
func intParam(q url.Values, name string) (int32, bool, error) {
	v, ok := q[name]
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v[0], 10, 32)
	if err != nil || n < 0 || strings.ContainsAny(v[0], "+-") {
		return 0, true, strconv.ErrSyntax
	}
	return int32(n), true, nil
}

// resource is GET /resources/{account}/{kind}/{identifier}: the resource,
// or with ?check=true a permission check (204 allowed, 404 not, 403 when the
// caller may not ask about ?role=), or with ?permitted_roles=true the roles
// allowed ?privilege=.
func (h *Handler) resource(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	account, kind, identifier := r.PathValue("account"), r.PathValue("kind"), r.PathValue("identifier")
	if check, _ := strconv.ParseBool(q.Get("check")); check {
		resp, err := h.policy.CheckPermission(outgoing(r), &sowerv1.CheckPermissionRequest{
			Account: account, Kind: kind, Identifier: identifier, Privilege: q.Get("privilege"), Role: q.Get("role"),
		})
		switch {
		case err != nil:
			if status.Code(err) == codes.NotFound {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			writeError(w, err)
		case resp.GetAllowed():
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
		return
	}
	if pr, _ := strconv.ParseBool(q.Get("permitted_roles")); pr {
		priv := q.Get("privilege")
		if priv == "" {
			priv = q.Get("permission")
		}
		resp, err := h.policy.ListPermittedRoles(outgoing(r), &sowerv1.ListPermittedRolesRequest{
			Account: account, Kind: kind, Identifier: identifier, Privilege: priv,
		})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, nonNil(resp.GetRoleIds()))
		return
	}
	resp, err := h.policy.GetResource(outgoing(r), &sowerv1.GetResourceRequest{Account: account, Kind: kind, Identifier: identifier})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toResourceJSON(resp.GetResource()))
}

// resourceJSON is a resource as Conjur shows it.
type resourceJSON struct {
	ID             string                  `json:"id"`
	Owner          string                  `json:"owner"`
	Policy         string                  `json:"policy,omitempty"`
	Permissions    []permissionJSON        `json:"permissions"`
	Annotations    []annotationJSON        `json:"annotations"`
	Secrets        *[]any                  `json:"secrets,omitempty"`
	PolicyVersions *[]policyVersionJSON    `json:"policy_versions,omitempty"`
	RestrictedTo   *[]string               `json:"restricted_to,omitempty"`
	Layers         *[]string               `json:"layers,omitempty"`
	Tokens         *[]hostFactoryTokenJSON `json:"tokens,omitempty"`
}

// secretVersionJSON is a version of a variable's value as Conjur lists it.
type secretVersionJSON struct {
	Version   int64   `json:"version"`
	ExpiresAt *string `json:"expires_at"`
}

type permissionJSON struct {
	Privilege string `json:"privilege"`
	Role      string `json:"role"`
	Policy    string `json:"policy,omitempty"`
}

type annotationJSON struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Policy string `json:"policy,omitempty"`
}

func toResourceJSON(r *sowerv1.ResourceInfo) resourceJSON {
	out := resourceJSON{ID: r.GetId(), Owner: r.GetOwner(), Policy: r.GetPolicy(),
		Permissions: []permissionJSON{}, Annotations: []annotationJSON{}}
	for _, p := range r.GetPermissions() {
		out.Permissions = append(out.Permissions, permissionJSON{Privilege: p.GetPrivilege(), Role: p.GetRole(), Policy: p.GetPolicy()})
	}
	for _, a := range r.GetAnnotations() {
		out.Annotations = append(out.Annotations, annotationJSON{Name: a.GetName(), Value: a.GetValue(), Policy: a.GetPolicy()})
	}
	_, kind, _ := splitID(r.GetId())
	switch kind {
	case "variable":
		// Conjur's secrets: each kept version, in a listing too; sower's
		// values do not expire.
		vs := make([]any, 0, len(r.GetSecretVersions()))
		for _, v := range r.GetSecretVersions() {
			vs = append(vs, secretVersionJSON{Version: v})
		}
		out.Secrets = &vs
	case "policy":
		if vs := r.GetPolicyVersions(); vs != nil {
			pv := policyVersionsJSON(vs)
			out.PolicyVersions = &pv
		}
	case "user", "host":
		rt := nonNil(r.GetRestrictedTo())
		out.RestrictedTo = &rt
	case "host_factory":
		// Conjur's tokens and layers; sower never shows a token itself
		// (it keeps only its hash).
		layers := nonNil(r.GetLayers())
		toks := make([]hostFactoryTokenJSON, 0, len(r.GetTokens()))
		for _, t := range r.GetTokens() {
			toks = append(toks, toTokenJSON(t))
		}
		out.Layers, out.Tokens = &layers, &toks
	}
	return out
}
