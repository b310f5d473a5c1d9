package yamlevent

import "fmt"

// Type is the kind of a parser event.
type Type int

// Event types, in the order libyaml defines them.
const (
	StreamStart Type = iota + 1
	StreamEnd
	DocumentStart
	DocumentEnd
	Alias
	Scalar
	SequenceStart
	SequenceEnd
	MappingStart
	MappingEnd
)

var typeNames = map[Type]string{
	StreamStart: "stream start", StreamEnd: "stream end",
	DocumentStart: "document start", DocumentEnd: "document end",
	Alias: "alias", Scalar: "scalar",
	SequenceStart: "sequence start", SequenceEnd: "sequence end",
	MappingStart: "mapping start", MappingEnd: "mapping end",
}

func (t Type) String() string { return typeNames[t] }

// Mark is a position in the input. Line and Column count from zero, as
// libyaml's do.
type Mark struct {
	Index, Line, Column int
}

// Event is one parser event.
type Event struct {
	Type Type
	// Start and End delimit the event's node in the input.
	Start, End Mark
	// Anchor is the anchor a node defines or an alias names.
	Anchor string
	// Tag is the node's resolved tag ("!group"); empty when untagged.
	Tag string
	// Value is a scalar's text.
	Value string
	// Plain is true for an untagged plain scalar; Quoted for an untagged
	// scalar in any other style (quoted, literal, folded). Both are false
	// for a tagged scalar.
	Plain, Quoted bool
	// Flow is true for a flow sequence or mapping ([a, b], {a: b}).
	Flow bool
}

// Error is a YAML syntax error, in libyaml's words.
type Error struct {
	// Problem says what is wrong ("did not find expected key").
	Problem string
	// Context, when set, says what the parser was doing ("while parsing a
	// block mapping") and ContextMark where that began.
	Context     string
	ContextMark Mark
	ProblemMark Mark
}

func (e *Error) Error() string {
	if e.Context != "" {
		return fmt.Sprintf("%s %s at line %d column %d", e.Problem, e.Context, e.ContextMark.Line+1, e.ContextMark.Column+1)
	}
	return fmt.Sprintf("%s at line %d column %d", e.Problem, e.ProblemMark.Line+1, e.ProblemMark.Column+1)
}

// Parser produces the events of a YAML stream, one at a time.
type Parser struct {
	p    yaml_parser_t
	done bool
}

// NewParser returns a parser over input.
func NewParser(input []byte) *Parser {
	p := &Parser{}
	yaml_parser_initialize(&p.p)
	yaml_parser_set_input_string(&p.p, input)
	return p
}

// Mark is where libyaml's scanner stands: past the current event's tokens
// and the lookahead the scanner needed to produce them. Conjur reports policy
// errors at this position, so sower does too.
func (p *Parser) Mark() Mark { return mark(p.p.mark) }

// Next returns the next event. After StreamEnd or an error it keeps
// returning the same result.
func (p *Parser) Next() (Event, error) {
	if p.p.error != yaml_NO_ERROR {
		return Event{}, p.err()
	}
	if p.done {
		return Event{Type: StreamEnd}, nil
	}
	var e yaml_event_t
	if !yaml_parser_parse(&p.p, &e) {
		return Event{}, p.err()
	}
	ev := Event{
		Type:   Type(e.typ),
		Start:  mark(e.start_mark),
		End:    mark(e.end_mark),
		Anchor: string(e.anchor),
		Tag:    string(e.tag),
		Value:  string(e.value),
	}
	switch e.typ {
	case yaml_NO_EVENT:
		// The parser stops producing events after the stream end.
		p.done = true
		return Event{Type: StreamEnd}, nil
	case yaml_STREAM_END_EVENT:
		p.done = true
	case yaml_SCALAR_EVENT:
		ev.Plain = e.implicit
		ev.Quoted = e.quoted_implicit
	case yaml_SEQUENCE_START_EVENT:
		ev.Flow = e.sequence_style() == yaml_FLOW_SEQUENCE_STYLE
	case yaml_MAPPING_START_EVENT:
		ev.Flow = e.mapping_style() == yaml_FLOW_MAPPING_STYLE
	}
	return ev, nil
}

func (p *Parser) err() error {
	problem := p.p.problem
	if problem == "" {
		problem = "invalid YAML"
	}
	return &Error{
		Problem:     problem,
		Context:     p.p.context,
		ContextMark: mark(p.p.context_mark),
		ProblemMark: mark(p.p.problem_mark),
	}
}

func mark(m yaml_mark_t) Mark {
	return Mark{Index: m.index, Line: m.line, Column: m.column}
}
