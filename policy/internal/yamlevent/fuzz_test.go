package yamlevent

import (
	"testing"
)

// FuzzParser feeds libyaml arbitrary bytes through the binding and closes
// the parser after stop events (0: read to the end). It checks what the
// policy parser relies on: events nest, marks stay inside the input and
// never move back, the stream ends or fails within a bounded number of
// events, and the end or error is sticky. Run it under -asan to check that
// every path frees libyaml's memory. The seed corpus is in
// testdata/fuzz/FuzzParser.
func FuzzParser(f *testing.F) {
	f.Add([]byte("- &a !group 'x'\n- *a\n- {b: [c, \"d\\0e\"]}\n"), uint16(0))
	f.Add([]byte("- !policy\n  id: app\n  body:\n  - !user alice\n"), uint16(5))
	f.Fuzz(func(t *testing.T, input []byte, stop uint16) {
		p := NewParser(input)
		defer p.Close()
		var (
			prev  Mark
			depth int
		)
		// Every event but the stream's start and end consumes at least one
		// token or closes a collection an earlier token opened.
		limit := 4*len(input) + 8
		for i := 0; ; i++ {
			if i > limit {
				t.Fatalf("more than %d events from %d bytes", limit, len(input))
			}
			if stop != 0 && i == int(stop) {
				p.Close()
				if _, err := p.Next(); err != errClosed && err == nil {
					t.Fatalf("Next after Close: %v", err)
				}
				return
			}
			ev, err := p.Next()
			m := p.Mark()
			if m.Index < prev.Index || m.Index > len(input) {
				t.Fatalf("event %d: scanner mark %+v after %+v, input %d bytes", i, m, prev, len(input))
			}
			prev = m
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty error text")
				}
				if _, again := p.Next(); again != err {
					t.Fatalf("Next after %v returned %v", err, again)
				}
				return
			}
			if ev.Start.Index > ev.End.Index || ev.End.Index > m.Index {
				t.Fatalf("event %d (%s): start %+v, end %+v, scanner %+v", i, ev.Type, ev.Start, ev.End, m)
			}
			switch ev.Type {
			case SequenceStart, MappingStart:
				depth++
			case SequenceEnd, MappingEnd:
				depth--
			case Alias:
				if ev.Anchor == "" {
					t.Fatalf("event %d: alias without a name", i)
				}
			case StreamEnd:
				if depth != 0 {
					t.Fatalf("stream end at depth %d", depth)
				}
				if ev, err := p.Next(); err != nil || ev.Type != StreamEnd {
					t.Fatalf("Next after the stream's end: %s, %v", ev.Type, err)
				}
				return
			case 0:
				t.Fatalf("event %d has no type", i)
			}
			if depth < 0 || depth > MaxDepth {
				t.Fatalf("event %d: depth %d", i, depth)
			}
			if ev.Type != Scalar && ev.Value != "" {
				t.Fatalf("event %d (%s) has a value", i, ev.Type)
			}
		}
	})
}
