package conjur

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorBody is Conjur's error JSON: {"error":{"code":...,"message":...}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
	Details any    `json:"details,omitempty"`
}

// httpStatus maps a gRPC code to the status Conjur answers with, and the
// error code Conjur puts in its JSON for it.
var httpStatus = map[codes.Code]struct {
	status int
	code   string
}{
	codes.InvalidArgument:    {http.StatusUnprocessableEntity, "unprocessable_entity"},
	codes.FailedPrecondition: {http.StatusUnprocessableEntity, "unprocessable_entity"},
	codes.OutOfRange:         {http.StatusUnprocessableEntity, "unprocessable_entity"},
	codes.Unauthenticated:    {http.StatusUnauthorized, "unauthorized"},
	codes.PermissionDenied:   {http.StatusForbidden, "forbidden"},
	codes.NotFound:           {http.StatusNotFound, "not_found"},
	codes.AlreadyExists:      {http.StatusConflict, "conflict"},
	codes.Aborted:            {http.StatusConflict, "conflict"},
	codes.ResourceExhausted:  {http.StatusTooManyRequests, "too_many_requests"},
	codes.Unavailable:        {http.StatusServiceUnavailable, "service_unavailable"},
	codes.DeadlineExceeded:   {http.StatusGatewayTimeout, "gateway_timeout"},
	codes.Unimplemented:      {http.StatusNotImplemented, "not_implemented"},
}

// InsufficientStorage is the ErrorInfo reason of a write refused because a
// member's disk is below its free-space floor (or etcd's database is at
// its quota). It is answered 507 Insufficient Storage rather than 429 (the
// code's usual answer, a rate limit) or 503 (no Leader: worth trying
// another node or again shortly): no other node would take the write, and
// it succeeds only once an operator frees space, so a client should
// surface it rather than retry in a loop.
const InsufficientStorage = "insufficient_storage"

// StatusOf is the HTTP status a status is answered with when it differs from
// the gRPC code's usual one: 507 for InsufficientStorage, else 0.
func StatusOf(st *status.Status) int {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == "sower" && info.Reason == InsufficientStorage {
			return http.StatusInsufficientStorage
		}
	}
	return 0
}

// recordNotFound matches Conjur's RecordNotFound message: "Variable 'db/password' not found in account 'acme'".
var recordNotFound = regexp.MustCompile(`^([A-Z][a-z_]*) '(.*)' not found in account '([^']*)'$`)

// writeError answers with Conjur's status and error JSON for err. A service
// may name Conjur's error code itself (for example "policy_invalid") in an
// errdetails.ErrorInfo reason. Conjur answers 401 with an empty body; so do
// we. An error that is not a gRPC status is an internal error whose detail
// stays in the server log.
//
// Two details change the answer's form: an ErrorInfo of domain
// "conjur-rack" (a token refused by the token check, such as one used from
// outside its cidr claim) is answered as conjur-rack does, text/plain with
// the message; a RetryInfo (a rate-limited login) sets Retry-After.
func writeError(w http.ResponseWriter, err error) {
	st, _ := status.FromError(err)
	m, ok := httpStatus[st.Code()]
	if !ok {
		m.status, m.code = http.StatusInternalServerError, "internal_error"
	}
	if c := StatusOf(st); c != 0 {
		m.status = c
	}
	SetRetryAfter(w.Header(), st)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == "conjur-rack" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(m.status)
			_, _ = w.Write([]byte(st.Message()))
			return
		}
	}
	if m.status == http.StatusUnauthorized {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body := errorBody{Error: errorDetail{Code: m.code, Message: st.Message()}}
	if m.status == http.StatusInternalServerError {
		body.Error.Message = "internal error; the server log has the details"
	}
	if m := recordNotFound.FindStringSubmatch(body.Error.Message); m != nil && st.Code() == codes.NotFound {
		// Conjur's RecordNotFound names the kind as target and the id in
		// its details.
		body.Error.Target = strings.ToLower(m[1])
		body.Error.Details = map[string]string{"code": "not_found", "target": "id", "message": m[3] + ":" + strings.ToLower(m[1]) + ":" + m[2]}
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Reason != "" {
				body.Error.Code = info.Reason
			}
			body.Error.Target = info.Metadata["target"]
		}
	}
	writeJSON(w, m.status, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// badRequest answers a request that cannot be decoded, in Conjur's form.
func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, errorBody{Error: errorDetail{Code: "bad_request", Message: msg}})
}

// SetRetryAfter sets Retry-After (whole seconds, rounded up) from a
// status's RetryInfo detail, if it has one. The /v1 gateway's error
// handler calls it too.
func SetRetryAfter(h http.Header, st *status.Status) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			secs := (ri.GetRetryDelay().AsDuration() + time.Second - 1) / time.Second
			h.Set("Retry-After", strconv.FormatInt(int64(max(secs, 1)), 10))
			return
		}
	}
}

// unprocessable answers Conjur's UnprocessableEntity: 422 with its message.
func unprocessable(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: errorDetail{Code: "unprocessable_entity", Message: msg}})
}
