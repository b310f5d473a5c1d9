package policy

import (
	"iter"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Values of a parsed document. A value is one of:
//
//	nil, bool, int64, *big.Int, float64, string, yamlDate  scalars
//	*object                                                a tagged node
//	*hashValue                                             an annotations mapping
//	*seq                                                   a sequence
//
// Objects and sequences are pointers because YAML aliases share them: an
// alias names the very record its anchor marked, as in Conjur.

// object is a record (!user …), a statement (!grant …) or a !member.
type object struct {
	spec *typeSpec
	pos  Position
	// file names the text the object was written in, for errors found
	// after parsing; empty when it is the load's only text.
	file string
	// attrs holds attributes by their singular name, in the order they
	// were set, which is the order Conjur's resolver visits the records
	// they refer to. A value is a single item or a *seq, as the text gave
	// it. Objects have a handful of attributes: a slice beats a map.
	attrs []attr
	// walked is the last walk of the resolver that visited the object.
	walked uint64
	// inline is the first objectAttrs attributes' storage, allocated with
	// the object: a record ends with four (id, annotations, account,
	// owner), a reference with two.
	inline [objectAttrs]attr
}

type attr struct {
	name  string
	value any
}

// objectAttrs is the room an object has for attributes before its
// attribute slice is allocated on its own.
const objectAttrs = 4

func newObject(spec *typeSpec, pos Position) *object {
	o := &object{spec: spec, pos: pos}
	o.attrs = o.inline[:0]
	return o
}

// copyAt returns a copy of o at pos. The copy shares o's attribute values:
// it is for references, whose values are strings, never changed in place.
func (o *object) copyAt(pos Position) *object {
	c := newObject(o.spec, pos)
	c.file = o.file
	c.attrs = append(c.attrs, o.attrs...)
	return c
}

// lookup returns an attribute and whether it is set.
func (o *object) lookup(name string) (any, bool) {
	for i := range o.attrs {
		if o.attrs[i].name == name {
			return o.attrs[i].value, true
		}
	}
	return nil, false
}

// get returns an attribute, or nil.
func (o *object) get(name string) any {
	v, _ := o.lookup(name)
	return v
}

func (o *object) set(name string, v any) {
	for i := range o.attrs {
		if o.attrs[i].name == name {
			o.attrs[i].value = v
			return
		}
	}
	o.attrs = append(o.attrs, attr{name, v})
}

func (o *object) unset(name string) {
	o.attrs = slices.DeleteFunc(o.attrs, func(a attr) bool { return a.name == name })
}

func (o *object) str(name string) string {
	s, _ := o.get(name).(string)
	return s
}

// hashValue is a plain mapping (annotations), in document order. A record
// has a few annotations, found by a linear search, which spares a map per
// record; a mapping of more than hashIndexed keys gets an index.
type hashValue struct {
	keys   []string
	values []any // values[i] is the value of keys[i]
	index  map[string]int
}

// hashIndexed is the number of keys beyond which a hashValue indexes them.
const hashIndexed = 8

// find returns the position of key k, or -1.
func (h *hashValue) find(k string) int {
	if h.index == nil {
		return slices.Index(h.keys, k)
	}
	if i, ok := h.index[k]; ok {
		return i
	}
	return -1
}

func (h *hashValue) set(k string, v any) {
	if i := h.find(k); i >= 0 {
		h.values[i] = v
		return
	}
	h.keys = append(h.keys, k)
	h.values = append(h.values, v)
	switch {
	case h.index != nil:
		h.index[k] = len(h.keys) - 1
	case len(h.keys) > hashIndexed:
		h.index = make(map[string]int, 2*len(h.keys))
		for i, k := range h.keys {
			h.index[k] = i
		}
	}
}

// seq is a sequence.
type seq struct {
	items []any
	// walked is the last walk of the resolver that visited the list.
	walked uint64
}

// yamlDate is a plain scalar that Conjur's loader reads as a date.
type yamlDate string

// items returns a value as a list: the items of a sequence, or the value
// alone.
func items(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case *seq:
		return v.items
	}
	return []any{v}
}

// eachItem yields the items of a value as items returns them, without
// making a slice for a single value.
func eachItem(v any) iter.Seq[any] {
	return func(yield func(any) bool) {
		switch v := v.(type) {
		case nil:
		case *seq:
			for _, it := range v.items {
				if !yield(it) {
					return
				}
			}
		default:
			yield(v)
		}
	}
}

// className is the Ruby class name Conjur's type errors report for a value.
func className(v any) string {
	switch v := v.(type) {
	case nil:
		return "NilClass"
	case bool:
		if v {
			return "TrueClass"
		}
		return "FalseClass"
	case int64, *big.Int:
		return "Integer"
	case float64:
		return "Float"
	case string:
		return "String"
	case yamlDate:
		return "Date"
	case *seq:
		return "Array"
	case *hashValue:
		return "Hash"
	case *object:
		return v.spec.class
	}
	return "Object"
}

// Conjur's loader guesses the type of an untagged plain scalar (SafeYAML's
// transforms): integers, floats, null, booleans and dates; everything else is
// a string. Quoted scalars are always strings.
var (
	reDecimal = regexp.MustCompile(`^[-+]?(0|[1-9][0-9_,]*)$`)
	reOctal   = regexp.MustCompile(`^0[0-7]+$`)
	reHex     = regexp.MustCompile(`^0x[0-9a-fA-F]+$`)
	reBinary  = regexp.MustCompile(`^0b[01_]+$`)
	reFloat   = regexp.MustCompile(`^[-+]?(?:\d[\d_]*)?(?:\.[\d_]*)?(?:[eE][-+]?\d+)?$`)
	reDate    = regexp.MustCompile(`^\d{4}-\d{1,2}-\d{1,2}$`)
)

func guessScalar(s string) any {
	if !startsLikeNumber(s) {
		// Most scalars are names; the regular expressions below cannot
		// match them, and running them was a good part of parsing.
		return guessWord(s)
	}
	switch {
	case reDecimal.MatchString(s):
		return parseInt(s, strings.NewReplacer("_", "", ",", "").Replace(s), 10)
	case reOctal.MatchString(s):
		return parseInt(s, s[1:], 8)
	case reHex.MatchString(s):
		return parseInt(s, s[2:], 16)
	case reBinary.MatchString(s):
		return parseInt(s, strings.ReplaceAll(s[2:], "_", ""), 2)
	}
	if reFloat.MatchString(s) && strings.ContainsAny(s, "0123456789") {
		if f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64); err == nil {
			return f
		}
	}
	if reDate.MatchString(s) {
		return yamlDate(s)
	}
	return guessWord(s)
}

// startsLikeNumber reports whether s starts the way every integer, float
// and date form above starts: with a sign, a digit, a dot or an exponent.
func startsLikeNumber(s string) bool {
	return s != "" && strings.IndexByte("+-.0123456789eE", s[0]) >= 0
}

// guessWord is guessScalar for a scalar that is no number: a keyword or
// the string it is.
func guessWord(s string) any {
	if v, ok := keyword(s); ok {
		return v
	}
	return s
}

// keyword returns the value of the words SafeYAML reads as null, booleans
// and infinities.
func keyword(s string) (any, bool) {
	switch strings.ToLower(s) {
	case ".inf", "+.inf":
		return math.Inf(1), true
	case "-.inf":
		return math.Inf(-1), true
	case ".nan":
		return math.NaN(), true
	case "", "~", "null":
		return nil, true
	case "yes", "on", "true":
		return true, true
	case "no", "off", "false":
		return false, true
	}
	return nil, false
}

// plainText is scalarText(guessScalar(s)), without making the value when
// s is a name (as mapping keys are).
func plainText(s string) string {
	if !startsLikeNumber(s) {
		if _, ok := keyword(s); !ok {
			return s
		}
	}
	return scalarText(guessScalar(s))
}

// parseInt reads digits in base; when they are no number at all (a binary
// literal of underscores only, "0b__"), the scalar stays the string it was,
// as Ruby's Integer() raises and Psych keeps the text.
func parseInt(scalar, digits string, base int) any {
	if n, err := strconv.ParseInt(digits, base, 64); err == nil {
		return n
	}
	n, ok := new(big.Int).SetString(digits, base)
	if !ok {
		return scalar
	}
	return n
}

// scalarText is a scalar's text as Conjur stores it (Ruby's to_s).
func scalarText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case *big.Int:
		return v.String()
	case float64:
		return rubyFloat(v)
	case string:
		return v
	case yamlDate:
		return string(v)
	case *seq:
		parts := make([]string, len(v.items))
		for i, it := range v.items {
			if s, ok := it.(string); ok {
				parts[i] = strconv.Quote(s)
			} else {
				parts[i] = scalarText(it)
			}
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *object:
		return v.str("id")
	}
	return ""
}

// rubyFloat formats a float as Ruby's Float#to_s does.
func rubyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.IsNaN(f):
		return "NaN"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e16 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	abs := math.Abs(f)
	if abs >= 1e16 || abs < 1e-4 {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		mant, exp, _ := strings.Cut(s, "e")
		if !strings.Contains(mant, ".") {
			mant += ".0"
		}
		if exp[0] == '+' {
			exp = "+" + strings.TrimLeft(exp[1:], "0")
		} else {
			exp = "-" + strings.TrimLeft(exp[1:], "0")
		}
		return mant + "e" + exp
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
