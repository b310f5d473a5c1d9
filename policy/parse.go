package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/sowerproject/sower/policy/internal/yamlevent"
)

// Document is a parsed policy: its statements as written, before ids are
// resolved. Parse makes one; Dump writes it back in canonical form; Resolve
// and Plan interpret it.
type Document struct {
	// Filename names the text in error messages; it may be empty.
	Filename string
	// stmts are the top-level items: records and statements (*object), and
	// nested lists of them (*seq).
	stmts []any
}

// Len returns the number of top-level entries in the document.
func (d *Document) Len() int { return len(d.stmts) }

// Parse reads policy text. The text is one YAML document holding a sequence
// of statements; an empty text is an empty policy. Errors are *Error values
// that wrap ErrInvalid and carry the line and column Conjur reports for the
// same text.
//
// Aliases are bounded: a text whose aliases expand it to more YAML nodes
// than MaxExpandedNodes(len(text)) is refused at the alias that crosses the
// limit, before the expansion costs anything (a 526-byte text nesting
// aliases ten deep and ten wide expands to ten billion nodes).
func Parse(filename string, text []byte) (*Document, error) {
	return parse(context.Background(), filename, text)
}

// parse is Parse that stops, returning ctx's error, when ctx ends.
func parse(ctx context.Context, filename string, text []byte) (*Document, error) {
	p := &parser{ctx: ctx, filename: filename, events: yamlevent.NewParser(text), anchors: map[string]any{}, tags: map[string]tagType{},
		anchorNodes: map[string]int64{}, maxNodes: MaxExpandedNodes(len(text)), textLen: len(text)}
	defer p.events.Close()
	stmts, err := p.stream()
	if err != nil {
		return nil, err
	}
	return &Document{Filename: filename, stmts: stmts}, nil
}

// parser reads the event stream the way Conjur's loader does, raising each
// error at the event Conjur raises it at, so that positions agree.
type parser struct {
	// ctx ends the parse early: its error is checked every ctxEvery events.
	ctx      context.Context
	seen     int
	filename string
	events   *yamlevent.Parser
	anchors  map[string]any
	// tags caches lookupTag: a text uses a handful of tags many times.
	tags map[string]tagType

	// nodes counts the YAML nodes the text expands to so far, an alias
	// counting as the nodes of its anchor; anchorNodes holds each anchor's
	// count, open the collections not yet ended.
	nodes       int64
	anchorNodes map[string]int64
	open        []openNode
	maxNodes    int64
	textLen     int
}

type openNode struct {
	anchor string
	start  int64
}

// The alias expansion limit, as hardened YAML parsers bound "billion laughs"
// texts: a policy may expand to AliasExpansionPerByte YAML nodes per byte of
// its text, and never less than AliasExpansionFloor. Text without aliases
// has at most one node per byte, so only aliases can reach the limit.
const (
	AliasExpansionPerByte = 10
	AliasExpansionFloor   = 10_000
)

// MaxExpandedNodes is how many YAML nodes a policy text of n bytes may
// expand to, aliases expanded.
func MaxExpandedNodes(n int) int64 {
	return max(AliasExpansionFloor, AliasExpansionPerByte*int64(n))
}

// count adds ev to the nodes the text expands to and refuses the text when
// they pass the limit.
func (p *parser) count(ev yamlevent.Event) error {
	switch ev.Type {
	case yamlevent.Scalar:
		p.nodes++
		if ev.Anchor != "" {
			p.anchorNodes[ev.Anchor] = 1
		}
	case yamlevent.SequenceStart, yamlevent.MappingStart:
		p.nodes++
		p.open = append(p.open, openNode{anchor: ev.Anchor, start: p.nodes - 1})
	case yamlevent.SequenceEnd, yamlevent.MappingEnd:
		if n := len(p.open); n > 0 {
			o := p.open[n-1]
			p.open = p.open[:n-1]
			if o.anchor != "" {
				p.anchorNodes[o.anchor] = p.nodes - o.start
			}
		}
	case yamlevent.Alias:
		p.nodes += p.anchorNodes[ev.Anchor]
	}
	if p.nodes > p.maxNodes {
		return p.fail("Aliases expand this policy to more than %d YAML nodes, the limit for a text of %d bytes (%d per byte, at least %d): write the repeated statements out or nest fewer aliases",
			p.maxNodes, p.textLen, AliasExpansionPerByte, AliasExpansionFloor)
	}
	return nil
}

// tagType is what lookupTag returns for a tag.
type tagType struct {
	t  *typeSpec
	ok bool
}

// fail returns an error at the scanner's current position.
func (p *parser) fail(format string, args ...any) *Error {
	m := p.events.Mark()
	return &Error{Filename: p.filename, Line: m.Line, Column: m.Column, Message: fmt.Sprintf(format, args...), parse: true}
}

func (p *parser) next() (yamlevent.Event, error) {
	ev, err := p.events.Next()
	if err != nil {
		var yerr *yamlevent.Error
		if errors.As(err, &yerr) {
			return ev, p.fail("%s", yerr.Error())
		}
		return ev, p.fail("%v", err)
	}
	if err := p.count(ev); err != nil {
		return ev, err
	}
	if p.seen++; p.seen%ctxEvery == 0 {
		if err := p.ctx.Err(); err != nil {
			return ev, err
		}
	}
	return ev, nil
}

// ctxEvery is how many events or records the parser and planner handle
// between two looks at their context.
const ctxEvery = 4096

func position(ev yamlevent.Event) Position {
	return Position{Line: ev.Start.Line + 1, Column: ev.Start.Column + 1}
}

func (p *parser) anchor(name string, v any) error {
	if name == "" {
		return nil
	}
	if prev, ok := p.anchors[name]; ok && truthy(prev) {
		return p.fail("Duplicate anchor %s", name)
	}
	p.anchors[name] = v
	return nil
}

// truthy is Ruby's truth: everything but nil and false.
func truthy(v any) bool {
	b, isBool := v.(bool)
	return v != nil && (!isBool || b)
}

func (p *parser) stream() ([]any, error) {
	var (
		result []any
		docs   int
	)
	for {
		ev, err := p.next()
		if err != nil {
			return nil, err
		}
		switch ev.Type {
		case yamlevent.StreamStart, yamlevent.DocumentEnd:
		case yamlevent.StreamEnd:
			return result, nil
		case yamlevent.DocumentStart:
			docs++
			if docs > 1 {
				return nil, p.fail("Multiple YAML documents encountered. Only a single document is permitted per policy.")
			}
			if result, err = p.root(); err != nil {
				return nil, err
			}
		default:
			return nil, p.fail("Unexpected %s", ev.Type)
		}
	}
}

// root reads the document's root node, which must be a sequence.
func (p *parser) root() ([]any, error) {
	ev, err := p.next()
	if err != nil {
		return nil, err
	}
	switch ev.Type {
	case yamlevent.SequenceStart:
		s, err := p.sequence(ev, nil, true)
		if err != nil {
			return nil, err
		}
		return s.items, nil
	case yamlevent.Scalar:
		// A document of nothing but comments is an empty policy.
		if ev.Tag == "" && ev.Plain && ev.Value == "" {
			return nil, nil
		}
		return nil, p.fail("Unexpected scalar")
	case yamlevent.MappingStart:
		return nil, p.fail("Unexpected mapping")
	case yamlevent.Alias:
		return nil, p.fail("Unexpected alias %s", ev.Anchor)
	}
	return nil, p.fail("Unexpected %s", ev.Type)
}

// typeOf returns the type a tag names, or def for an untagged node.
func (p *parser) typeOf(tag string, def *typeSpec) (*typeSpec, error) {
	if tag == "" {
		return def, nil
	}
	tt, cached := p.tags[tag]
	if !cached {
		tt.t, tt.ok = lookupTag(tag)
		p.tags[tag] = tt
	}
	t, ok := tt.t, tt.ok
	if !ok {
		return def, nil
	}
	if t == nil {
		return nil, p.fail("Unrecognized data type '%s'", tag)
	}
	return t, nil
}

// scalar interprets a scalar: a tagged scalar (or one whose type the field
// implies) is a record with that id; an untagged plain scalar is guessed
// (integer, float, boolean, null, date or string); anything quoted is a
// string.
func (p *parser) scalar(ev yamlevent.Event, def *typeSpec) (any, error) {
	t, err := p.typeOf(ev.Tag, def)
	if err != nil {
		return nil, err
	}
	if t != nil && !t.hash {
		if !t.hasField("id") {
			return nil, p.fail("No such attribute 'id' on type %s", t.class)
		}
		o := newObject(t, position(ev))
		o.file = p.filename
		o.set("id", ev.Value)
		return o, nil
	}
	if ev.Quoted {
		return ev.Value, nil
	}
	return guessScalar(ev.Value), nil
}

// sequence reads a sequence whose start event is start. def is the type of
// untagged entries; statements is set for the policy itself and policy
// bodies, whose entries must be statements.
func (p *parser) sequence(start yamlevent.Event, def *typeSpec, statements bool) (*seq, error) {
	s := &seq{}
	for {
		ev, err := p.next()
		if err != nil {
			return nil, err
		}
		var item any
		switch ev.Type {
		case yamlevent.SequenceEnd:
			return s, p.anchor(start.Anchor, s)
		case yamlevent.MappingStart:
			t, err := p.typeOf(ev.Tag, def)
			if err != nil {
				return nil, err
			}
			if t == nil {
				return nil, p.fail("No type given or inferred for sequence entry")
			}
			if item, err = p.mapping(ev, t); err != nil {
				return nil, err
			}
		case yamlevent.SequenceStart:
			if item, err = p.sequence(ev, def, statements); err != nil {
				return nil, err
			}
		case yamlevent.Scalar:
			if item, err = p.scalar(ev, def); err != nil {
				return nil, err
			}
			if err := p.anchor(ev.Anchor, item); err != nil {
				return nil, err
			}
		case yamlevent.Alias:
			item = p.anchors[ev.Anchor]
		default:
			return nil, p.fail("Unexpected %s", ev.Type)
		}
		if statements {
			if err := p.checkStatement(item); err != nil {
				return nil, err
			}
		}
		s.items = append(s.items, item)
	}
}

// checkStatement rejects what cannot stand in a list of statements.
func (p *parser) checkStatement(v any) error {
	switch v := v.(type) {
	case *seq:
		for _, it := range v.items {
			if err := p.checkStatement(it); err != nil {
				return err
			}
		}
		return nil
	case *object:
		if v.spec.record || v.spec.class == "Grant" || v.spec.class == "Revoke" ||
			v.spec.class == "Permit" || v.spec.class == "Deny" || v.spec.class == "Delete" {
			return nil
		}
		return p.fail("!%s is not a statement: a policy lists records (such as !user or !policy) and !grant, !revoke, !permit, !deny or !delete", v.spec.tag)
	}
	return p.fail("Expected a statement (such as !user or !grant), got %s", className(v))
}

// mapping reads a mapping of type t whose start event is start.
func (p *parser) mapping(start yamlevent.Event, t *typeSpec) (any, error) {
	var (
		rec  any
		seen = map[string]bool{}
	)
	if t.hash {
		rec = &hashValue{}
	} else {
		o := newObject(t, position(start))
		o.file = p.filename
		rec = o
	}
	for {
		ev, err := p.next()
		if err != nil {
			return nil, err
		}
		var key string
		switch ev.Type {
		case yamlevent.MappingEnd:
			return rec, p.anchor(start.Anchor, rec)
		case yamlevent.Scalar:
			if seen[ev.Value] {
				return nil, p.fail("Duplicate attribute: %s", ev.Value)
			}
			seen[ev.Value] = true
			if ev.Tag == "" && ev.Anchor == "" {
				// What scalar would return, as text, without making it.
				key = ev.Value
				if !ev.Quoted {
					key = plainText(ev.Value)
				}
				break
			}
			k, err := p.scalar(ev, nil)
			if err != nil {
				return nil, err
			}
			key = ev.Value
			if _, isObject := k.(*object); !isObject {
				key = scalarText(k)
			}
			if err := p.anchor(ev.Anchor, k); err != nil {
				return nil, err
			}
		case yamlevent.Alias:
			key = scalarText(p.anchors[ev.Anchor])
		case yamlevent.SequenceStart:
			return nil, p.fail("Unexpected sequence")
		case yamlevent.MappingStart:
			return nil, p.fail("Unexpected mapping")
		default:
			return nil, p.fail("Unexpected %s", ev.Type)
		}
		if err := p.entry(rec, key); err != nil {
			return nil, err
		}
	}
}

// entry reads the value of key in rec and stores it.
func (p *parser) entry(rec any, key string) error {
	var (
		f   *fieldSpec
		def *typeSpec
	)
	if o, ok := rec.(*object); ok {
		if f = o.spec.field(key); f != nil && f.valueType != "" {
			def = statementTypes[f.valueType]
		}
	}
	ev, err := p.next()
	if err != nil {
		return err
	}
	var v any
	switch ev.Type {
	case yamlevent.Scalar:
		if v, err = p.scalar(ev, def); err != nil {
			return err
		}
		if err := p.anchor(ev.Anchor, v); err != nil {
			return err
		}
	case yamlevent.Alias:
		v = p.anchors[ev.Anchor]
	case yamlevent.MappingStart:
		t, err := p.typeOf(ev.Tag, def)
		if err != nil {
			return err
		}
		if t == nil {
			return p.fail("Attribute '%s' can't be a mapping", key)
		}
		if v, err = p.mapping(ev, t); err != nil {
			return err
		}
	case yamlevent.SequenceStart:
		if v, err = p.sequence(ev, def, f != nil && f.kind == fBody); err != nil {
			return err
		}
	default:
		return p.fail("Unexpected %s", ev.Type)
	}
	return p.set(rec, f, key, v)
}

// set type-checks v for the attribute and stores it, as Conjur's attribute
// setters do: a plural attribute takes one value or a list; a role given
// where a member is expected becomes a member without admin option.
func (p *parser) set(rec any, f *fieldSpec, key string, v any) error {
	o, ok := rec.(*object)
	if !ok {
		h := rec.(*hashValue)
		h.set(key, v)
		return nil
	}
	if f == nil {
		return p.fail("No such attribute '%s' on type %s", key, o.spec.class)
	}
	switch {
	case v == nil:
		o.set(f.name, nil)
		return nil
	case f.kind == fBody:
		s, isSeq := v.(*seq)
		if !isSeq {
			return p.fail("Expected a sequence for field '%s', got %s", key, className(v))
		}
		o.set(f.name, s)
		return nil
	}
	if s, isSeq := v.(*seq); isSeq {
		if f.plural == "" {
			return p.fail("Expected a %s for field '%s', got Array", kindNames[f.kind], f.name)
		}
		out := &seq{items: make([]any, len(s.items))}
		for i, it := range s.items {
			c, err := p.coerce(f, it)
			if err != nil {
				return err
			}
			out.items[i] = c
		}
		o.set(f.name, out)
		return nil
	}
	c, err := p.coerce(f, v)
	if err != nil {
		return err
	}
	o.set(f.name, c)
	return nil
}

// coerce checks one value for an attribute of kind f.kind.
func (p *parser) coerce(f *fieldSpec, v any) (any, error) {
	bad := func() (any, error) {
		return nil, p.fail("Expected a %s for field '%s', got %s", kindNames[f.kind], f.name, className(v))
	}
	switch f.kind {
	case fString:
		if _, ok := v.(string); ok {
			return v, nil
		}
	case fInteger:
		switch v.(type) {
		case int64:
			return v, nil
		case interface{ Int64() int64 }:
			return v, nil
		}
	case fBoolean:
		switch v {
		case true, "true":
			return true, nil
		case false, "false":
			return false, nil
		}
	case fCIDR:
		s, ok := v.(string)
		if !ok {
			return nil, p.fail("CIDR argument must be a String")
		}
		if msg := checkCIDR(s); msg != "" {
			return nil, p.fail("%s", msg)
		}
		return s, nil
	case fHash:
		if h, ok := v.(*hashValue); ok {
			return h, nil
		}
	case fRole:
		if o, ok := v.(*object); ok && o.spec.role {
			return o, nil
		}
	case fResource:
		if o, ok := v.(*object); ok && o.spec.resource {
			return o, nil
		}
	case fLayer:
		if o, ok := v.(*object); ok && o.spec.tag == "layer" {
			return o, nil
		}
	case fMember:
		if o, ok := v.(*object); ok {
			if o.spec.class == "Member" {
				return o, nil
			}
			if o.spec.role {
				m := newObject(statementTypes["member"], o.pos)
				m.file = o.file
				m.set("role", o)
				return m, nil
			}
		}
	}
	return bad()
}
