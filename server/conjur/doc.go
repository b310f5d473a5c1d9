// Package conjur serves Conjur's REST API on a sower node: Conjur's paths,
// bodies, headers, status codes and error JSON, so that Conjur clients
// (conjur-api-go, the Conjur CLI, curl scripts) work unchanged.
//
// It holds no logic of its own. Each handler decodes Conjur's wire format,
// calls the node's gRPC service through the node's own gRPC connection (the
// same path the /v1 gateway takes, so authentication and authorization run
// once, in the interceptors and services), and encodes the answer as Conjur
// does. Errors become Conjur's error JSON in one function, writeError.
//
// Conjur's ids travel URL-escaped in one path segment ("host%2Fmyapp");
// the handlers use Go's per-segment unescaping so an id may contain '/'.
package conjur
