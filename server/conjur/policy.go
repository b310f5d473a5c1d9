package conjur

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// maxPolicyBody bounds a policy text: 100,000 hosts in layers are about
// 4 MiB of YAML.
const maxPolicyBody = 64 << 20

// conjurVersion is the Conjur OSS version whose API sower serves. Clients
// such as conjur-api-go ask for it (GET /) before using newer features like
// dry runs.
const conjurVersion = "1.21.1"

// root is GET /: Conjur's status in JSON, with the version clients check.
func (h *Handler) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": conjurVersion, "server": "sower"})
}

// loadPolicy is POST (append), PATCH (update) and PUT (replace)
// /policies/{account}/policy/{identifier} with the YAML as the body;
// ?dryRun=true reports the change without applying it.
func (h *Handler) loadPolicy(mode sowerv1.LoadMode) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		text, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPolicyBody))
		if err != nil {
			badRequest(w, "policy body is unreadable or larger than 64 MiB")
			return
		}
		dryRun, _ := strconv.ParseBool(r.URL.Query().Get("dryRun"))
		resp, err := h.policy.LoadPolicy(outgoing(r), &sowerv1.LoadPolicyRequest{
			Account: r.PathValue("account"), Identifier: r.PathValue("identifier"), Mode: mode,
			Text: string(text), DryRun: dryRun, CountsOnly: !dryRun,
		})
		if err != nil {
			if dryRun {
				writeDryRunError(w, err)
				return
			}
			writePolicyError(w, err)
			return
		}
		if dryRun {
			body := dryRunBody(resp.GetChanges().GetRecords())
			if ws := resp.GetWarnings(); len(ws) > 0 {
				body["warnings"] = ws
			}
			writeJSON(w, http.StatusOK, body)
			return
		}
		created := make(map[string]createdRole, len(resp.GetCreatedRoles()))
		for _, c := range resp.GetCreatedRoles() {
			created[c.GetId()] = createdRole{ID: c.GetId(), APIKey: c.GetApiKey()}
		}
		writeJSON(w, http.StatusCreated, loadBody{CreatedRoles: created, Version: resp.GetVersion(), Warnings: resp.GetWarnings()})
	}
}

// loadBody is Conjur's answer to a policy load.
type loadBody struct {
	CreatedRoles map[string]createdRole `json:"created_roles"`
	Version      int64                  `json:"version"`
	// Warnings are Conjur's, present only when there are some.
	Warnings []string `json:"warnings,omitempty"`
}

type createdRole struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
}

// policyError reads the position of a policy_invalid error.
func policyError(err error) (*errdetails.ErrorInfo, bool) {
	return errorInfo(err, "policy_invalid")
}

// errorInfo finds the ErrorInfo of reason in err.
func errorInfo(err error, reason string) (*errdetails.ErrorInfo, bool) {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason {
			return info, true
		}
	}
	return nil, false
}

// writeValidationFailed answers Conjur's failed validation of a policy
// version: the field and its message, and the same as a detail.
func writeValidationFailed(w http.ResponseWriter, info *errdetails.ErrorInfo) {
	target, msg := info.GetMetadata()["target"], info.GetMetadata()["message"]
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{
		"code": "validation_failed", "message": target + " " + msg,
		"details": []map[string]string{{"code": "validation_failed", "target": target, "message": msg}},
	}})
}

// writePolicyError answers a failed load: policy_invalid with Conjur's
// message (the position of an error found after parsing is not in it, as
// in Conjur's) and innererror (file, line, column) for YAML errors and
// wherever sower knows the position; validation_failed as Conjur's;
// policy_conflict with Retry-After; the rest as every other error.
func writePolicyError(w http.ResponseWriter, err error) {
	st, _ := status.FromError(err)
	if info, ok := errorInfo(err, "validation_failed"); ok {
		writeValidationFailed(w, info)
		return
	}
	if info, ok := policyError(err); ok {
		md := info.GetMetadata()
		msg := st.Message()
		if md["parse"] != "true" && md["message"] != "" {
			msg = md["message"]
		}
		body := map[string]any{"code": "policy_invalid", "message": msg}
		if line, lerr := strconv.Atoi(md["line"]); lerr == nil && (line > 0 || md["parse"] == "true") {
			col, _ := strconv.Atoi(info.GetMetadata()["column"])
			body["innererror"] = map[string]any{
				"code": "policy_invalid", "filename": info.GetMetadata()["filename"], "line": line, "column": col,
			}
		}
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": body})
		return
	}
	if st.Code() == codes.Aborted {
		w.Header().Set("Retry-After", "2")
	}
	writeError(w, err)
}

// writeDryRunError answers a dry run of invalid text as Conjur does: 422
// with the status "Invalid YAML" and the errors with their positions.
func writeDryRunError(w http.ResponseWriter, err error) {
	info, ok := policyError(err)
	if !ok {
		writePolicyError(w, err)
		return
	}
	st, _ := status.FromError(err)
	line, _ := strconv.Atoi(info.GetMetadata()["line"])
	col, _ := strconv.Atoi(info.GetMetadata()["column"])
	msg := info.GetMetadata()["message"]
	if msg == "" {
		msg = st.Message()
	}
	// Conjur's second line: advice, or nothing.
	msg += "\n" + adviceFor(msg)
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
		"status":  "Invalid YAML",
		"created": items(nil), "updated": map[string]any{"before": items(nil), "after": items(nil)}, "deleted": items(nil),
		"errors": []map[string]any{{"line": line, "column": col, "message": msg}},
	})
}

// dryRunItem is a record in Conjur's dry-run answer.
type dryRunItem struct {
	Identifier   string               `json:"identifier"`
	ID           string               `json:"id"`
	Type         string               `json:"type"`
	Owner        string               `json:"owner"`
	Policy       string               `json:"policy"`
	Permissions  *map[string][]string `json:"permissions,omitempty"`
	Permitted    *map[string][]string `json:"permitted,omitempty"`
	Annotations  map[string]string    `json:"annotations"`
	Members      *[]string            `json:"members,omitempty"`
	Memberships  *[]string            `json:"memberships,omitempty"`
	RestrictedTo *[]string            `json:"restricted_to,omitempty"`
}

func items(rs []*sowerv1.Record) map[string][]dryRunItem {
	out := make([]dryRunItem, 0, len(rs))
	for _, r := range rs {
		_, kind, identifier := splitID(r.GetId())
		it := dryRunItem{Identifier: r.GetId(), ID: identifier, Type: kind, Owner: r.GetOwner(), Policy: r.GetPolicy(),
			Annotations: map[string]string{}}
		for _, a := range r.GetAnnotations() {
			it.Annotations[a.GetName()] = a.GetValue()
		}
		if r.GetIsRole() {
			perms := map[string][]string{}
			for _, p := range r.GetPermissions() {
				perms[p.GetPrivilege()] = append(perms[p.GetPrivilege()], p.GetResource())
			}
			it.Permissions = &perms
			members, memberships, restricted := nonNil(r.GetMembers()), nonNil(r.GetMemberships()), nonNil(r.GetRestrictedTo())
			it.Members, it.Memberships, it.RestrictedTo = &members, &memberships, &restricted
		} else {
			permitted := map[string][]string{}
			for _, p := range r.GetPermitted() {
				permitted[p.GetPrivilege()] = append(permitted[p.GetPrivilege()], p.GetRole())
			}
			it.Permitted = &permitted
		}
		out = append(out, it)
	}
	return map[string][]dryRunItem{"items": out}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func dryRunBody(rc *sowerv1.RecordChanges) map[string]any {
	return map[string]any{
		"status":  "Valid YAML",
		"created": items(rc.GetCreated()),
		"updated": map[string]any{"before": items(rc.GetUpdatedBefore()), "after": items(rc.GetUpdatedAfter())},
		"deleted": items(rc.GetDeleted()),
	}
}

// splitID splits "account:kind:identifier".
func splitID(id string) (account, kind, identifier string) {
	parts := strings.SplitN(id, ":", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}

// getPolicy is GET /policies/{account}/policy/{identifier}: the policy's
// versions as Conjur's policy_version objects when the client asks for JSON
// (Content-Type or Accept application/json), else the text of the latest
// version (or of ?version=N) as YAML.
func (h *Handler) getPolicy(w http.ResponseWriter, r *http.Request) {
	if _, ok := r.URL.Query()["version"]; ok {
		h.getPolicyVersions(w, r)
		return
	}
	h.getEffectivePolicy(w, r)
}

// getPolicyVersions is sower's ?version=N on GET /policies/...: the
// versions (JSON) or the text of version N (YAML).
func (h *Handler) getPolicyVersions(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("version"), 10, 64)
	if err != nil || n < 1 {
		badRequest(w, "version must be a positive number")
		return
	}
	resp, err := h.policy.GetPolicy(outgoing(r), &sowerv1.GetPolicyRequest{
		Account: r.PathValue("account"), Identifier: r.PathValue("identifier"), Version: n,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, policyVersionsJSON(resp.GetVersions()))
		return
	}
	vs := resp.GetVersions()
	if len(vs) == 0 {
		writeError(w, status.Error(codes.NotFound, "the policy has not been loaded yet"))
		return
	}
	w.Header().Set("Content-Type", "application/x-yaml")
	_, _ = io.WriteString(w, vs[len(vs)-1].GetPolicyText())
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Content-Type"), "json") || strings.Contains(r.Header.Get("Accept"), "json")
}

// policyVersionJSON is Conjur's policy_version object.
type policyVersionJSON struct {
	ID           string `json:"id"`
	Version      int64  `json:"version"`
	CreatedAt    string `json:"created_at"`
	FinishedAt   string `json:"finished_at"`
	PolicyText   string `json:"policy_text"`
	PolicySHA256 string `json:"policy_sha256"`
	Role         string `json:"role"`
	ClientIP     string `json:"client_ip"`
}

func policyVersionsJSON(vs []*sowerv1.PolicyVersion) []policyVersionJSON {
	out := make([]policyVersionJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, policyVersionJSON{ID: v.GetId(), Version: v.GetVersion(), CreatedAt: v.GetCreatedAt(),
			FinishedAt: v.GetFinishedAt(), PolicyText: v.GetPolicyText(), PolicySHA256: v.GetPolicySha256(),
			Role: v.GetRole(), ClientIP: v.GetClientIp()})
	}
	return out
}
