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
