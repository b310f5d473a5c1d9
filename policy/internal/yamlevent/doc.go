// Package yamlevent is libyaml's scanner and parser, as ported to Go by the
// go-yaml project (go.yaml.in/yaml/v2, the files covered by libyaml's MIT
// licence, see LICENSE), behind a small event API.
//
// The policy parser needs the event stream and, for each event, libyaml's
// scanner position: Conjur's policy loader is written against libyaml's
// events (through Ruby's Psych) and reports every policy error at that
// position, including the scanner's lookahead. Operators' tooling and the
// conformance fixtures depend on those exact line and column numbers, which
// a document-level decoder cannot reproduce.
//
// The ported files are unchanged except for the package name, gofmt, and the
// removal of the emitter half of apic.go; event.go is the package's own API.
package yamlevent
