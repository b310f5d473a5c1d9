// Package server assembles one sower node: its data directory, the embedded
// etcd member (package cluster), the gRPC server with its interceptors, the
// grpc-gateway REST mux that calls the same gRPC handlers, and the plain HTTP
// endpoints (/healthz, /readyz, /metrics, /openapi.json).
//
// It owns no domain logic: each gRPC service lives in its own package under
// server/api and is the one place where protobuf messages and domain types
// meet. Authentication and authorization run once, in gRPC interceptors and
// services; the REST gateway dials the node's own gRPC listener so that every
// REST call passes through them too.
//
// Inputs: a Config (from cmd/sower's flags, environment and config file).
// Outputs: a running node until Run's context is cancelled; on first start
// with an empty data directory, a new single-node cluster with the account's
// admin credential in <data-dir>/admin.key (0600).
package server
