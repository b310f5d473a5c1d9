package yamlevent

/*
#cgo LDFLAGS: -lyaml
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

// sower_event is the current event with libyaml's unions flattened, so that
// Go reads plain fields. Its pointers point into the event.
typedef struct {
	yaml_event_type_t type;
	yaml_mark_t start, end;
	const yaml_char_t *anchor, *tag, *value;
	size_t length;
	int plain, quoted, flow;
} sower_event;

// sower_yaml is one parse: the parser, the event it produced last, and the
// parser's own copy of the input (libyaml reads the input lazily, so it must
// outlive the parser and must not move).
typedef struct {
	yaml_parser_t parser;
	yaml_event_t event;
	sower_event out;
	unsigned char *input;
} sower_yaml;

static void sower_yaml_free(sower_yaml *y) {
	if (y == NULL) {
		return;
	}
	yaml_event_delete(&y->event);
	yaml_parser_delete(&y->parser);
	free(y->input);
	free(y);
}

// sower_yaml_new copies the input and starts a parser over the copy; NULL
// when memory runs out.
static sower_yaml *sower_yaml_new(const void *input, size_t size) {
	sower_yaml *y = calloc(1, sizeof *y);
	if (y == NULL) {
		return NULL;
	}
	y->input = malloc(size ? size : 1);
	if (y->input == NULL) {
		free(y);
		return NULL;
	}
	if (size) {
		memcpy(y->input, input, size);
	}
	if (!yaml_parser_initialize(&y->parser)) {
		free(y->input);
		free(y);
		return NULL;
	}
	yaml_parser_set_input_string(&y->parser, y->input, size);
	return y;
}

// sower_yaml_next deletes the previous event (the caller has copied what it
// needs) and parses the next one into y->out. It returns 0 on a parse error.
static int sower_yaml_next(sower_yaml *y) {
	yaml_event_t *e = &y->event;
	sower_event *o = &y->out;
	yaml_event_delete(e);
	memset(o, 0, sizeof *o);
	if (!yaml_parser_parse(&y->parser, e)) {
		return 0;
	}
	o->type = e->type;
	o->start = e->start_mark;
	o->end = e->end_mark;
	switch (e->type) {
	case YAML_ALIAS_EVENT:
		o->anchor = e->data.alias.anchor;
		break;
	case YAML_SCALAR_EVENT:
		o->anchor = e->data.scalar.anchor;
		o->tag = e->data.scalar.tag;
		o->value = e->data.scalar.value;
		o->length = e->data.scalar.length;
		o->plain = e->data.scalar.plain_implicit;
		o->quoted = e->data.scalar.quoted_implicit;
		break;
	case YAML_SEQUENCE_START_EVENT:
		o->anchor = e->data.sequence_start.anchor;
		o->tag = e->data.sequence_start.tag;
		o->flow = e->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
		break;
	case YAML_MAPPING_START_EVENT:
		o->anchor = e->data.mapping_start.anchor;
		o->tag = e->data.mapping_start.tag;
		o->flow = e->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
		break;
	default:
		break;
	}
	return 1;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// MaxInput is the largest input the parser accepts, in bytes. It is far
// above any policy a cluster can load in one go (the 100,000-host benchmark
// policy is 9 MB) and far below sizes where libyaml's int-sized counters
// (indentation, columns) could overflow.
const MaxInput = 64 << 20

// MaxDepth is the deepest nesting of sequences and mappings the parser
// accepts. libyaml keeps its own stacks on the heap and has no limit, but
// every reader of the events (the policy parser, Dump) recurses once per
// level; go-yaml, which sower used before, stops at the same depth.
const MaxDepth = 10000

// errClosed is returned by Next after Close, before the stream's end.
var errClosed = errors.New("yamlevent: parser closed")

// Parser produces the events of a YAML stream, one at a time. It holds C
// memory until the stream ends, parsing fails or Close is called. A Parser
// is not safe for concurrent use.
type Parser struct {
	c       *C.sower_yaml // nil once freed
	cleanup runtime.Cleanup
	mark    Mark
	depth   int
	done    bool
	err     error
}

// NewParser returns a parser over a copy of input. Call Close when done
// with it before the stream's end.
func NewParser(input []byte) *Parser {
	p := &Parser{}
	if len(input) > MaxInput {
		p.err = &Error{Problem: fmt.Sprintf("the text is %d bytes, over the parser's limit of %d MiB; split it into smaller documents", len(input), MaxInput>>20)}
		return p
	}
	c := C.sower_yaml_new(unsafe.Pointer(unsafe.SliceData(input)), C.size_t(len(input)))
	if c == nil {
		p.err = &Error{Problem: "out of memory starting the YAML parser"}
		return p
	}
	p.c = c
	// Close frees the parser; the cleanup only catches a caller that
	// abandons one without Close.
	p.cleanup = runtime.AddCleanup(p, func(c *C.sower_yaml) { C.sower_yaml_free(c) }, c)
	return p
}

// Version is the version of the libyaml the program runs with ("0.2.5").
func Version() string { return C.GoString(C.yaml_get_version_string()) }

// Close frees the parser's C memory. It is idempotent; Next after Close
// returns an error unless the stream had already ended or failed.
func (p *Parser) Close() {
	if p.c == nil {
		return
	}
	p.cleanup.Stop()
	C.sower_yaml_free(p.c)
	p.c = nil
	if !p.done && p.err == nil {
		p.err = errClosed
	}
}

// Mark is where libyaml's scanner stands: past the current event's tokens
// and the lookahead the scanner needed to produce them. Conjur reports policy
// errors at this position, so sower does too.
func (p *Parser) Mark() Mark { return p.mark }

// Next returns the next event. After StreamEnd or an error it keeps
// returning the same result.
func (p *Parser) Next() (Event, error) {
	if p.err != nil {
		return Event{}, p.err
	}
	if p.done {
		return Event{Type: StreamEnd}, nil
	}
	c := p.c
	ok := C.sower_yaml_next(c) != 0
	p.mark = goMark(c.parser.mark)
	if !ok {
		p.err = parseError(&c.parser)
		p.Close()
		return Event{}, p.err
	}
	// Copy everything out of the event before it is deleted by the next
	// call or by Close.
	o := &c.out
	ev := Event{
		Type:   eventType(o._type),
		Start:  goMark(o.start),
		End:    goMark(o.end),
		Anchor: cString(o.anchor),
		Tag:    cString(o.tag),
		Plain:  o.plain != 0,
		Quoted: o.quoted != 0,
		Flow:   o.flow != 0,
	}
	if o.value != nil {
		ev.Value = C.GoStringN((*C.char)(unsafe.Pointer(o.value)), C.int(o.length))
	}
	switch ev.Type {
	case 0:
		// libyaml produces no more events after the stream's end.
		ev = Event{Type: StreamEnd}
		fallthrough
	case StreamEnd:
		p.done = true
		p.Close()
	case SequenceStart, MappingStart:
		p.depth++
		if p.depth > MaxDepth {
			p.err = &Error{Problem: fmt.Sprintf("exceeded max depth of %d", MaxDepth), ProblemMark: ev.Start}
			p.Close()
			return Event{}, p.err
		}
	case SequenceEnd, MappingEnd:
		p.depth--
	}
	return ev, nil
}

// eventType maps libyaml's event types to the package's; YAML_NO_EVENT,
// which libyaml returns after the stream's end, maps to 0.
func eventType(t C.yaml_event_type_t) Type {
	switch t {
	case C.YAML_STREAM_START_EVENT:
		return StreamStart
	case C.YAML_STREAM_END_EVENT:
		return StreamEnd
	case C.YAML_DOCUMENT_START_EVENT:
		return DocumentStart
	case C.YAML_DOCUMENT_END_EVENT:
		return DocumentEnd
	case C.YAML_ALIAS_EVENT:
		return Alias
	case C.YAML_SCALAR_EVENT:
		return Scalar
	case C.YAML_SEQUENCE_START_EVENT:
		return SequenceStart
	case C.YAML_SEQUENCE_END_EVENT:
		return SequenceEnd
	case C.YAML_MAPPING_START_EVENT:
		return MappingStart
	case C.YAML_MAPPING_END_EVENT:
		return MappingEnd
	}
	return 0
}

// parseError copies libyaml's error out of the parser. The problem and
// context texts are static strings in libyaml.
func parseError(p *C.yaml_parser_t) error {
	problem := C.GoString(p.problem)
	switch {
	case p.error == C.YAML_MEMORY_ERROR:
		problem = "out of memory parsing YAML"
	case problem == "":
		problem = "invalid YAML"
	}
	return &Error{
		Problem:     problem,
		Context:     C.GoString(p.context),
		ContextMark: goMark(p.context_mark),
		ProblemMark: goMark(p.problem_mark),
	}
}

func goMark(m C.yaml_mark_t) Mark {
	return Mark{Index: int(m.index), Line: int(m.line), Column: int(m.column)}
}

// cString copies a NUL-terminated libyaml string, as Psych does for anchors
// and tags.
func cString(s *C.yaml_char_t) string {
	if s == nil {
		return ""
	}
	return C.GoString((*C.char)(unsafe.Pointer(s)))
}
