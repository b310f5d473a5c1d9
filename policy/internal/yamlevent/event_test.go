package yamlevent

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// brief writes an event and the scanner mark after it on one line:
// "scalar 0:2-0:15 &a !group 'x' @1:1" (lines and columns from zero).
func brief(ev Event, m Mark) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d:%d-%d:%d", ev.Type, ev.Start.Line, ev.Start.Column, ev.End.Line, ev.End.Column)
	if ev.Anchor != "" {
		if ev.Type == Alias {
			b.WriteString(" *" + ev.Anchor)
		} else {
			b.WriteString(" &" + ev.Anchor)
		}
	}
	if ev.Tag != "" {
		b.WriteString(" " + ev.Tag)
	}
	if ev.Type == Scalar {
		fmt.Fprintf(&b, " %q", ev.Value)
		switch {
		case ev.Plain:
			b.WriteString(" plain")
		case ev.Quoted:
			b.WriteString(" quoted")
		}
	}
	if ev.Flow {
		b.WriteString(" flow")
	}
	fmt.Fprintf(&b, " @%d:%d", m.Line, m.Column)
	return b.String()
}

// parseAll reads input to its end or first error.
func parseAll(t testing.TB, input []byte) ([]string, error) {
	t.Helper()
	p := NewParser(input)
	defer p.Close()
	var got []string
	for range 1000 {
		ev, err := p.Next()
		if err != nil {
			return got, err
		}
		got = append(got, brief(ev, p.Mark()))
		if ev.Type == StreamEnd {
			return got, nil
		}
	}
	t.Fatalf("no stream end after 1000 events: %q", got)
	return nil, nil
}

func TestEvents(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		input string
		want  []string
	}{
		"empty": {"", []string{
			"stream start 0:0-0:0 @0:0",
			"stream end 0:0-0:0 @0:0",
		}},
		"anchors, tags, styles and a NUL in a quoted scalar": {
			"- &a !group 'x'\n- *a\n- {b: [c, \"d\\0e\"]}\n- |\n  lit\n",
			[]string{
				"stream start 0:0-0:0 @0:0",
				"document start 0:0-0:0 @0:1",
				"sequence start 0:0-0:0 @0:1",
				// A tagged scalar is neither plain nor quoted.
				`scalar 0:2-0:15 &a !group "x" @1:1`,
				"alias 1:2-1:4 *a @2:1",
				// The scanner reads the whole flow mapping before the
				// parser emits its start: a flow collection may be a key.
				"mapping start 2:2-2:3 flow @3:1",
				`scalar 2:3-2:4 "b" plain @3:1`,
				"sequence start 2:6-2:7 flow @3:1",
				`scalar 2:7-2:8 "c" plain @3:1`,
				`scalar 2:10-2:16 "d\x00e" quoted @3:1`,
				"sequence end 2:16-2:17 @3:1",
				"mapping end 2:17-2:18 @3:1",
				`scalar 3:2-5:0 "lit\n" quoted @5:0`,
				"sequence end 5:0-5:0 @5:0",
				"document end 5:0-5:0 @5:0",
				"stream end 5:0-5:0 @5:0",
			},
		},
		// libyaml 0.2.5 looks past "[]" to the end of the next line before
		// emitting the document start; go-yaml's port of an older libyaml
		// stopped after "]". Conjur's positions are 0.2.5's.
		"lookahead after a flow sequence": {"[]\n...\n", []string{
			"stream start 0:0-0:0 @0:0",
			"document start 0:0-0:0 @1:3",
			"sequence start 0:0-0:1 flow @1:3",
			"sequence end 0:1-0:2 @1:3",
			"document end 1:0-1:3 @1:3",
			"stream end 2:0-2:0 @2:0",
		}},
		"mapping with lookahead to the value": {"a: b\n", []string{
			"stream start 0:0-0:0 @0:0",
			"document start 0:0-0:0 @0:2",
			"mapping start 0:0-0:0 @0:2",
			`scalar 0:0-0:1 "a" plain @0:2`,
			`scalar 0:3-0:4 "b" plain @1:0`,
			"mapping end 1:0-1:0 @1:0",
			"document end 1:0-1:0 @1:0",
			"stream end 1:0-1:0 @1:0",
		}},
		"UTF-16LE with a byte order mark": {"\xff\xfe-\x00 \x00a\x00\n\x00", []string{
			"stream start 0:0-0:0 @0:0",
			"document start 0:0-0:0 @0:1",
			"sequence start 0:0-0:0 @0:1",
			`scalar 0:2-0:3 "a" plain @1:0`,
			"sequence end 1:0-1:0 @1:0",
			"document end 1:0-1:0 @1:0",
			"stream end 1:0-1:0 @1:0",
		}},
		"tag directive and verbatim tags": {"%TAG ! tag:example.com,2000:\n--- [!foo x, !!str y, !<tag:z> z]\n", []string{
			"stream start 0:0-0:0 @0:0",
			"document start 0:0-1:3 @1:3",
			// No simple key may start after "---", so no lookahead.
			"sequence start 1:4-1:5 flow @1:5",
			`scalar 1:5-1:11 tag:example.com,2000:foo "x" @1:12`,
			`scalar 1:13-1:20 tag:yaml.org,2002:str "y" @1:21`,
			`scalar 1:22-1:32 tag:z "z" @1:33`,
			"sequence end 1:32-1:33 @1:33",
			"document end 2:0-2:0 @2:0",
			"stream end 2:0-2:0 @2:0",
		}},
		"two documents": {"--- a\n--- b\n", []string{
			"stream start 0:0-0:0 @0:0",
			"document start 0:0-0:3 @0:3",
			`scalar 0:4-0:5 "a" plain @1:0`,
			"document end 1:0-1:0 @1:3",
			"document start 1:0-1:3 @1:3",
			`scalar 1:4-1:5 "b" plain @2:0`,
			"document end 2:0-2:0 @2:0",
			"stream end 2:0-2:0 @2:0",
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseAll(t, []byte(tt.input))
			if err != nil {
				t.Fatalf("Next: %v (after %q)", err, got)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events of %q:\n got: %s\nwant: %s", tt.input, strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		input []byte
		want  Error
		text  string
		mark  Mark // the scanner's mark after the error
	}{
		"key missing in a block mapping": {
			input: []byte("a: b\n- c\n"),
			want:  Error{Problem: "did not find expected key", Context: "while parsing a block mapping", ProblemMark: Mark{5, 1, 0}},
			text:  "did not find expected key while parsing a block mapping at line 1 column 1",
			mark:  Mark{6, 1, 1},
		},
		"unclosed flow sequence": {
			input: []byte("- [a\n"),
			want:  Error{Problem: "did not find expected ',' or ']'", Context: "while parsing a flow sequence", ContextMark: Mark{2, 0, 2}, ProblemMark: Mark{5, 1, 0}},
			text:  "did not find expected ',' or ']' while parsing a flow sequence at line 1 column 3",
			mark:  Mark{5, 1, 0},
		},
		"unterminated quoted scalar": {
			input: []byte("key: 'unterminated\n"),
			want:  Error{Problem: "found unexpected end of stream", Context: "while scanning a quoted scalar", ContextMark: Mark{5, 0, 5}, ProblemMark: Mark{19, 1, 0}},
			text:  "found unexpected end of stream while scanning a quoted scalar at line 1 column 6",
			mark:  Mark{19, 1, 0},
		},
		// libyaml 0.2.5 forbids flow indicators in tags, in block context
		// too; go-yaml's port accepted "!laye]r" as a tag.
		"flow indicator in a tag": {
			input: []byte("- !laye]r\n"),
			want:  Error{Problem: "did not find expected whitespace or line break", Context: "while scanning a tag", ContextMark: Mark{2, 0, 2}, ProblemMark: Mark{7, 0, 7}},
			text:  "did not find expected whitespace or line break while scanning a tag at line 1 column 3",
			mark:  Mark{7, 0, 7},
		},
		"mapping value in a plain scalar": {
			input: []byte("- a\n  b: c\n"),
			want:  Error{Problem: "mapping values are not allowed in this context", ContextMark: Mark{7, 1, 3}, ProblemMark: Mark{7, 1, 3}},
			text:  "mapping values are not allowed in this context at line 2 column 4",
			mark:  Mark{7, 1, 3},
		},
		// The reader checks the encoding of its whole first buffer before
		// the first event, and reports no position.
		"invalid UTF-8": {
			input: []byte("- ok\n- \xff\n"),
			want:  Error{Problem: "invalid leading UTF-8 octet"},
			text:  "invalid leading UTF-8 octet at line 1 column 1",
		},
		"nesting deeper than MaxDepth": {
			input: []byte(strings.Repeat("[", MaxDepth+1)),
			want:  Error{Problem: "exceeded max depth of 10000", ProblemMark: Mark{MaxDepth, 0, MaxDepth}},
			text:  "exceeded max depth of 10000 at line 1 column 10001",
			// At the end of the input the scanner moves to a new line.
			mark: Mark{MaxDepth + 1, 1, 0},
		},
		// The slice is never written, so its pages are never touched.
		"input over MaxInput": {
			input: make([]byte, MaxInput+1),
			want:  Error{Problem: "the text is 67108865 bytes, over the parser's limit of 64 MiB; split it into smaller documents"},
			text:  "the text is 67108865 bytes, over the parser's limit of 64 MiB; split it into smaller documents at line 1 column 1",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := NewParser(tt.input)
			defer p.Close()
			var err error
			for range len(tt.input) + 10 {
				if _, err = p.Next(); err != nil {
					break
				}
			}
			var yerr *Error
			if !errors.As(err, &yerr) {
				t.Fatalf("Next: got %v (%T), want a *Error", err, err)
			}
			if *yerr != tt.want {
				t.Errorf("error:\n got %+v\nwant %+v", *yerr, tt.want)
			}
			if got := err.Error(); got != tt.text {
				t.Errorf("Error():\n got %q\nwant %q", got, tt.text)
			}
			if got := p.Mark(); got != tt.mark {
				t.Errorf("Mark() = %+v, want %+v", got, tt.mark)
			}
			if _, again := p.Next(); again != err {
				t.Errorf("Next after the error returned %v, want the same error", again)
			}
		})
	}
}

// TestMaxDepth: MaxDepth levels parse, one more does not (TestErrors).
func TestMaxDepth(t *testing.T) {
	t.Parallel()
	input := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	p := NewParser([]byte(input))
	defer p.Close()
	starts := 0
	for {
		ev, err := p.Next()
		if err != nil {
			t.Fatalf("Next after %d sequence starts: %v", starts, err)
		}
		if ev.Type == SequenceStart {
			starts++
		}
		if ev.Type == StreamEnd {
			break
		}
	}
	if starts != MaxDepth {
		t.Errorf("%d sequence starts, want %d", starts, MaxDepth)
	}
}

func TestEndAndClose(t *testing.T) {
	t.Parallel()
	input := []byte("- a\n- b\n")
	tests := map[string]struct {
		events  int  // Next calls before Close
		closeAt bool // Close after those calls
		want    error
		wantEnd bool // Next then returns StreamEnd
	}{
		"Next after the stream's end":          {events: 20, wantEnd: true},
		"Close after the stream's end":         {events: 20, closeAt: true, wantEnd: true},
		"Close before the first event":         {events: 0, closeAt: true, want: errClosed},
		"Close mid-stream":                     {events: 4, closeAt: true, want: errClosed},
		"no Close: freed at the stream's end":  {events: 9, wantEnd: true},
		"Close after a partial read of events": {events: 1, closeAt: true, want: errClosed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := NewParser(input)
			for range tt.events {
				if _, err := p.Next(); err != nil {
					t.Fatal(err)
				}
			}
			if tt.closeAt {
				p.Close()
				p.Close()
			}
			for range 2 {
				ev, err := p.Next()
				if err != tt.want {
					t.Fatalf("Next: %v, want %v", err, tt.want)
				}
				if tt.wantEnd && ev.Type != StreamEnd {
					t.Fatalf("Next: %s, want stream end", ev.Type)
				}
			}
			if tt.wantEnd && p.c != nil {
				t.Error("the C parser is still allocated after the stream's end")
			}
			p.Close()
		})
	}
}

// TestConcurrentParsers: parsers share no state, so parallel parses (under
// the race detector) agree with a serial one.
func TestConcurrentParsers(t *testing.T) {
	t.Parallel()
	input := variablesPolicy(50)
	want, err := parseAll(t, input)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := parseAll(t, input)
				if err != nil || len(got) != len(want) || got[len(got)/2] != want[len(want)/2] {
					t.Errorf("a parallel parse differs: %v, %d events, want %d", err, len(got), len(want))
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestVersion: the marks and texts above, and the conformance fixtures'
// positions, are libyaml 0.2.5's (Debian 12, the CI image).
func TestVersion(t *testing.T) {
	if v := Version(); v != "0.2.5" {
		t.Fatalf("linked libyaml %s; the tests pin libyaml 0.2.5's positions: install Debian 12's libyaml-dev (make system-deps)", v)
	}
}
