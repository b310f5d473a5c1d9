// Package yamlevent is a cgo binding to the system's libyaml: its parser's
// event stream, with every event's marks and libyaml's own error texts and
// positions.
//
// The policy parser needs the event stream and, for each event, libyaml's
// scanner position: Conjur's policy loader is written against libyaml's
// events (through Ruby's Psych, which wraps the same C library) and reports
// every policy error at that position, including the scanner's lookahead.
// Operators' tooling and the conformance fixtures depend on those exact line
// and column numbers, which a document-level decoder cannot reproduce; a
// binding to libyaml gives them by construction.
//
// Use:
//
//	p := yamlevent.NewParser(text) // copies text into C memory
//	defer p.Close()
//	for {
//		ev, err := p.Next()    // a *Error for a YAML syntax error
//		...                    // p.Mark() is where the scanner stands
//		if ev.Type == yamlevent.StreamEnd {
//			break
//		}
//	}
//
// Every event's strings are copied into Go memory before libyaml frees the
// event. The parser frees its C memory at the stream's end, at the first
// error, or on Close, whichever comes first. Input is limited to MaxInput
// bytes and nesting to MaxDepth levels.
//
// Building needs cgo and libyaml's headers (Debian: libyaml-dev, which
// `make system-deps` installs); the binary then links libyaml-0.so.2
// (Debian: libyaml-0-2). Tests pin behaviour of libyaml 0.2.5, the version
// on Debian 12 and in the CI image.
package yamlevent
