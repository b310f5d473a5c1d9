//go:build !cgo

package yamlevent

// The policy parser is the system's libyaml, linked through cgo: build with
// CGO_ENABLED=1 and libyaml's headers installed (Debian: libyaml-dev, see
// `make system-deps`). This undefined name makes the build say so.
var _ = policy_parser_needs_cgo_and_libyaml_dev
