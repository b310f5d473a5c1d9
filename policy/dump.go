package policy

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dump writes the document in Conjur's canonical form: every record as a
// tagged mapping with its attributes in alphabetical order, plural
// attributes under their singular name, roles given as members written as
// !member, and YAML anchors (&1, &2 …) on the records the document refers to
// more than once.
func (d *Document) Dump() []byte {
	return dumpItems(d.stmts, true)
}

// dumpItems writes a list of statements. policyBody says whether a policy
// without a body shows an empty one, as a parsed policy does.
func dumpItems(items []any, policyBody bool) []byte {
	e := &emitter{anchors: map[any]int{}, seen: map[any]bool{}, policyBody: policyBody}
	e.number(&seq{items: items})
	e.seen = map[any]bool{}
	e.buf.WriteString("---\n")
	if len(items) == 0 {
		e.buf.Reset()
		e.buf.WriteString("--- []\n")
	}
	for _, it := range items {
		e.buf.WriteString("-")
		e.value(it, 0, true)
	}
	return e.buf.Bytes()
}

// emitter writes values as Ruby's Psych writes Conjur's objects.
type emitter struct {
	buf bytes.Buffer
	// anchors numbers the objects that occur more than once, in the order
	// of their second occurrence, as Psych does.
	anchors    map[any]int
	seen       map[any]bool
	policyBody bool
}

// fieldNames returns an object's attributes in output order.
func (e *emitter) fieldNames(o *object) []string {
	names := make([]string, 0, len(o.attrs)+1)
	for _, a := range o.attrs {
		if a.value != nil || a.name == "body" {
			names = append(names, a.name)
		}
	}
	if e.policyBody && o.spec.tag == "policy" && !slices.Contains(names, "body") {
		names = append(names, "body")
	}
	slices.Sort(names)
	return names
}

// number walks values in output order and numbers repeated ones.
func (e *emitter) number(v any) {
	switch v.(type) {
	case *object, *seq, *hashValue:
	default:
		return
	}
	if e.seen[v] {
		if _, ok := e.anchors[v]; !ok {
			e.anchors[v] = len(e.anchors) + 1
		}
		return
	}
	e.seen[v] = true
	switch v := v.(type) {
	case *object:
		for _, k := range e.fieldNames(v) {
			e.number(v.get(k))
		}
	case *seq:
		for _, it := range v.items {
			e.number(it)
		}
	case *hashValue:
		for _, hv := range v.values {
			e.number(hv)
		}
	}
}

func (e *emitter) indent(n int) {
	for range n {
		e.buf.WriteByte(' ')
	}
}

// value writes v after a "-" or "key:" already on the line. indent is the
// column of that "-" or key. inSeq is set after "-".
func (e *emitter) value(v any, indent int, inSeq bool) {
	anchor := ""
	switch v.(type) {
	case *object, *seq, *hashValue:
		if n, ok := e.anchors[v]; ok {
			if e.seen[v] {
				fmt.Fprintf(&e.buf, " *%d\n", n)
				return
			}
			anchor = "&" + strconv.Itoa(n)
		}
		e.seen[v] = true
	}
	switch v := v.(type) {
	case *object:
		head := "!" + v.spec.tag
		if anchor != "" {
			head = anchor + " " + head
		}
		names := e.fieldNames(v)
		if len(names) == 0 {
			e.buf.WriteString(" " + head + " {}\n")
			return
		}
		e.buf.WriteString(" " + head + "\n")
		for _, k := range names {
			e.indent(indent + 2)
			e.buf.WriteString(k + ":")
			fv := v.get(k)
			if fv == nil && k == "body" {
				fv = &seq{}
			}
			e.value(fv, indent+2, false)
		}
	case *hashValue:
		if len(v.keys) == 0 {
			e.buf.WriteString(strings.TrimRight(" "+anchor, " ") + " {}\n")
			return
		}
		first := true
		if anchor != "" || !inSeq {
			if anchor != "" {
				e.buf.WriteString(" " + anchor)
			}
			e.buf.WriteString("\n")
			first = false
		}
		for i, k := range v.keys {
			if first {
				e.buf.WriteString(" ")
				first = false
			} else {
				e.indent(indent + 2)
			}
			e.buf.WriteString(quoteScalar(k) + ":")
			e.value(v.values[i], indent+2, false)
		}
	case *seq:
		if len(v.items) == 0 {
			e.buf.WriteString(strings.TrimRight(" "+anchor, " ") + " []\n")
			return
		}
		if !inSeq {
			// Sequences in mappings are not indented.
			if anchor != "" {
				e.buf.WriteString(" " + anchor)
			}
			e.buf.WriteString("\n")
			for _, it := range v.items {
				e.indent(indent)
				e.buf.WriteString("-")
				e.value(it, indent, true)
			}
			return
		}
		first := true
		if anchor != "" {
			e.buf.WriteString(" " + anchor + "\n")
			first = false
		}
		for _, it := range v.items {
			if first {
				e.buf.WriteString(" -")
				first = false
			} else {
				e.indent(indent + 2)
				e.buf.WriteString("-")
			}
			e.value(it, indent+2, true)
		}
	case nil:
		e.buf.WriteString("\n")
	default:
		e.buf.WriteString(" " + formatScalar(v) + "\n")
	}
}

// formatScalar writes a scalar as Psych does.
func formatScalar(v any) string {
	switch v := v.(type) {
	case string:
		return quoteScalar(v)
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case *big.Int:
		return v.String()
	case float64:
		switch {
		case math.IsInf(v, 1):
			return ".inf"
		case math.IsInf(v, -1):
			return "-.inf"
		case math.IsNaN(v):
			return ".nan"
		}
		return rubyFloat(v)
	case yamlDate:
		return string(v)
	}
	return quoteScalar(fmt.Sprint(v))
}

// quoteScalar picks a string's style as Psych does: double quotes for text
// that starts with a non-word character, single quotes for text a YAML
// reader would take for something other than a string, plain otherwise.
func quoteScalar(s string) string {
	switch {
	case strings.ContainsAny(s, "\n\r") || !utf8.ValidString(s) || hasControl(s):
		return doubleQuote(s)
	case s == "y" || s == "Y" || s == "n" || s == "N":
		return doubleQuote(s)
	case s != "" && !isWordRune(firstRune(s)) && !strings.Contains(s, `"`):
		return doubleQuote(s)
	}
	if _, isString := guessScalar(s).(string); !isString || !plainSafe(s) || leadingOctalLike(s) {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return s
}

func firstRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

// isWordRune is Ruby's [[:word:]].
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.Is(unicode.Pc, r)
}

func hasControl(s string) bool {
	for _, r := range s {
		if r != '\t' && (unicode.IsControl(r) || r == 0xFEFF) {
			return true
		}
	}
	return false
}

// leadingOctalLike is Psych's /\A0[0-7]*[89]/: text a YAML 1.1 reader might
// misread as a number.
func leadingOctalLike(s string) bool {
	if s == "" || s[0] != '0' {
		return false
	}
	i := 1
	for i < len(s) && s[i] >= '0' && s[i] <= '7' {
		i++
	}
	return i < len(s) && (s[i] == '8' || s[i] == '9')
}

// plainSafe reports whether libyaml would write s as a plain scalar.
func plainSafe(s string) bool {
	if s == "" || s != strings.TrimSpace(s) {
		return false
	}
	if strings.Contains(s, ": ") || strings.Contains(s, " #") || strings.HasSuffix(s, ":") || strings.Contains(s, "\t") {
		return false
	}
	switch s[0] {
	case '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return false
	}
	return true
}

func doubleQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, w := 0, 0; i < len(s); i += w {
		r, width := utf8.DecodeRuneInString(s[i:])
		w = width
		switch {
		case r == utf8.RuneError && width == 1:
			fmt.Fprintf(&b, `\x%02X`, s[i])
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7F:
			fmt.Fprintf(&b, `\x%02X`, r)
		case r == 0xFEFF || (r >= 0x80 && !unicode.IsPrint(r)):
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
