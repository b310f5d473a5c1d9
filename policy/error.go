package policy

import (
	"errors"
	"fmt"
)

// ErrInvalid is the sentinel every policy text error wraps: a YAML syntax
// error, a statement Conjur's language does not allow, a reference that
// cannot be resolved. The REST layer answers it with 422 policy_invalid.
var ErrInvalid = errors.New("policy: invalid policy")

// ErrDeletionInAppend is wrapped by the Error of an append (POST) whose
// text holds !delete, !revoke or !deny. Conjur reports it as a failed
// validation of the policy text rather than as an invalid policy.
var ErrDeletionInAppend = errors.New("policy: may not contain deletion statements")

// Error is an error in policy text, with its position.
//
// Parse errors report the position Conjur reports for the same text:
// libyaml's scanner position when the error was found, whose line and column
// count from zero and include the scanner's lookahead (so an error in a value
// at the end of a line is reported at the start of the next line). Errors
// found after parsing (resolution and load planning) report where the
// offending statement or reference starts, counting lines and columns from
// one, as editors do.
type Error struct {
	Filename string
	Line     int
	Column   int
	// Message is the error without its position, in Conjur's words where
	// Conjur has words for it.
	Message string
	// parse is set for errors found while parsing.
	parse bool
	// kind, when set, is a more specific sentinel the error also wraps.
	kind error
}

// IsParse reports whether the error was found while parsing the YAML (its
// position is libyaml's, counted from zero) rather than after.
func (e *Error) IsParse() bool { return e.parse }

func (e *Error) Error() string {
	if e.parse {
		return fmt.Sprintf("Error at line %d, column %d in %s : %s", e.Line, e.Column, e.Filename, e.Message)
	}
	if e.Line == 0 {
		return e.Message
	}
	name := e.Filename
	if name == "" {
		name = "policy"
	}
	return fmt.Sprintf("%s:%d:%d: %s", name, e.Line, e.Column, e.Message)
}

// Unwrap lets errors.Is(err, ErrInvalid) hold, and errors.Is of the more
// specific sentinel the error was made with.
func (e *Error) Unwrap() []error {
	if e.kind != nil {
		return []error{ErrInvalid, e.kind}
	}
	return []error{ErrInvalid}
}

// Position is where a node starts in the policy text, counting from one.
type Position struct {
	Line, Column int
}

func (p Position) String() string { return fmt.Sprintf("line %d, column %d", p.Line, p.Column) }

// errAt returns a post-parse error at pos.
func errAt(filename string, pos Position, format string, args ...any) *Error {
	return &Error{Filename: filename, Line: pos.Line, Column: pos.Column, Message: fmt.Sprintf(format, args...)}
}
