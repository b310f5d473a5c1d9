package conjur

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"google.golang.org/grpc/metadata"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// Host factories, as Conjur's HostFactoryTokensController and
// HostFactoriesController serve them:
//
//	POST   /host_factory_tokens          expiration, host_factory, cidr[], count → 200 [{expiration, cidr, token}]
//	DELETE /host_factory_tokens/{token}  → 204
//	POST   /host_factories/hosts         Authorization: Token token="…"; id, annotations[name] → 201 host JSON + api_key
//
// Parameters come from the form body or the query string, as Rails merges
// them.

// hostFactoryTokenJSON is a token as Conjur shows it.
type hostFactoryTokenJSON struct {
	Expiration string   `json:"expiration"`
	CIDR       []string `json:"cidr"`
	Token      string   `json:"token,omitempty"`
}

func toTokenJSON(t *sowerv1.HostFactoryToken) hostFactoryTokenJSON {
	return hostFactoryTokenJSON{Expiration: t.GetExpiration(), CIDR: nonNil(t.GetCidr()), Token: t.GetToken()}
}

// parseForm reads the query string and a form body of at most maxBody.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "the form is unreadable or larger than 1 MiB: send application/x-www-form-urlencoded parameters")
		return false
	}
	return true
}

// createHostFactoryTokens is POST /host_factory_tokens.
func (h *Handler) createHostFactoryTokens(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	f := r.Form
	req := &sowerv1.CreateHostFactoryTokensRequest{HostFactory: f.Get("host_factory"), Expiration: f.Get("expiration")}
	req.Cidr = append(append(req.Cidr, f["cidr[]"]...), f["cidr"]...)
	if c, ok := f["count"]; ok {
		n, err := strconv.ParseInt(c[0], 10, 32)
		if err != nil || n <= 0 {
			writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: errorDetail{Code: "argument_error", Message: "Invalid value for parameter 'count': " + c[0]}})
			return
		}
		req.Count = int32(n)
	}
	resp, err := h.policy.CreateHostFactoryTokens(outgoing(r), req)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]hostFactoryTokenJSON, 0, len(resp.GetTokens()))
	for _, t := range resp.GetTokens() {
		out = append(out, toTokenJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// revokeHostFactoryToken is DELETE /host_factory_tokens/{token}.
func (h *Handler) revokeHostFactoryToken(w http.ResponseWriter, r *http.Request) {
	if _, err := h.policy.RevokeHostFactoryToken(outgoing(r), &sowerv1.RevokeHostFactoryTokenRequest{Token: r.PathValue("token")}); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// hfTokenHeader is how Conjur reads a host factory token from the
// Authorization header.
var hfTokenHeader = regexp.MustCompile(`^Token token="(.*)"`)

// annotationParam is Rails' annotations[name] form parameter.
var annotationParam = regexp.MustCompile(`^annotations\[(.+)\]$`)

// createHostWithToken is POST /host_factories/hosts.
func (h *Handler) createHostWithToken(w http.ResponseWriter, r *http.Request) {
	m := hfTokenHeader.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !parseForm(w, r) {
		return
	}
	req := &sowerv1.CreateHostWithTokenRequest{Token: m[1], Id: r.Form.Get("id")}
	names := make([]string, 0, len(r.Form))
	for k := range r.Form {
		if annotationParam.MatchString(k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		req.Annotations = append(req.Annotations, &sowerv1.ResourceAnnotation{Name: annotationParam.FindStringSubmatch(k)[1], Value: r.Form.Get(k)})
	}
	resp, err := h.policy.CreateHostWithToken(clientAddr(r), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, hostWithKeyJSON{resourceJSON: toResourceJSON(resp.GetHost()), APIKey: resp.GetApiKey()})
}

// hostWithKeyJSON is Conjur's answer to a host factory: the host's resource
// and its API key.
type hostWithKeyJSON struct {
	resourceJSON
	APIKey string `json:"api_key"`
}

// clientAddr carries only the client's address to gRPC: the host factory
// token is in the request, not in an authorization header the token check
// would read.
func clientAddr(r *http.Request) context.Context {
	md := metadata.MD{}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		md.Set("x-forwarded-for", host)
	}
	return metadata.NewOutgoingContext(r.Context(), md)
}
