package policy

import (
	"strings"
	"unicode/utf8"
)

// appendFactJSON appends f's JSON: the bytes encoding/json gives for the
// same value (a test holds the two to each other), without reflection. A
// large policy load encodes hundreds of thousands of facts.
func appendFactJSON(b []byte, f Fact) []byte {
	switch f := f.(type) {
	case Role:
		b = appendIDField(append(b, '{'), "id", f.ID)
		b = appendPolicyField(b, f.PolicyID)
		if len(f.RestrictedTo) > 0 {
			b = append(b, `,"restricted_to":[`...)
			for i, n := range f.RestrictedTo {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, n)
			}
			b = append(b, ']')
		}
		if len(f.PublicKeys) > 0 {
			b = append(b, `,"public_keys":[`...)
			for i, k := range f.PublicKeys {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
			}
			b = append(b, ']')
		}
	case Resource:
		b = appendIDField(append(b, '{'), "id", f.ID)
		b = appendIDField(append(b, ','), "owner", f.Owner)
		b = appendPolicyField(b, f.PolicyID)
	case Membership:
		b = appendIDField(append(b, '{'), "role", f.Role)
		b = appendIDField(append(b, ','), "member", f.Member)
		b = appendBoolField(append(b, ','), "admin_option", f.AdminOption)
		b = appendBoolField(append(b, ','), "ownership", f.Ownership)
		b = appendPolicyField(b, f.PolicyID)
	case Permission:
		b = appendIDField(append(b, '{'), "role", f.Role)
		b = appendStringField(append(b, ','), "privilege", f.Privilege)
		b = appendIDField(append(b, ','), "resource", f.Resource)
		b = appendPolicyField(b, f.PolicyID)
	case Annotation:
		b = appendIDField(append(b, '{'), "resource", f.Resource)
		b = appendStringField(append(b, ','), "name", f.Name)
		b = appendStringField(append(b, ','), "value", f.Value)
		b = appendPolicyField(b, f.PolicyID)
	}
	return append(b, '}')
}

func appendName(b []byte, name string) []byte {
	b = append(b, '"')
	b = append(b, name...)
	return append(b, `":`...)
}

func appendIDField(b []byte, name string, id ID) []byte {
	b = appendName(b, name)
	if id.IsZero() {
		return append(b, `""`...)
	}
	return appendJSONString(b, id.String())
}

func appendPolicyField(b []byte, id ID) []byte {
	if id.IsZero() {
		return b // omitzero
	}
	return appendIDField(append(b, ','), "policy", id)
}

func appendStringField(b []byte, name, v string) []byte {
	return appendJSONString(appendName(b, name), v)
}

func appendBoolField(b []byte, name string, v bool) []byte {
	b = appendName(b, name)
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does by default: HTML-safe
// (<, > and & escaped), invalid UTF-8 replaced by U+FFFD, U+2028 and
// U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeFactJSON decodes value, stored under a key with the type prefix
// kind, when it is exactly what appendFactJSON writes: its fields in that
// order, strings without escapes, arrays not empty. It reports false for
// anything else, which the caller then gives to encoding/json, so every
// input decodes as encoding/json decodes it (a test and a fuzz target hold
// the two to each other); a Follower's first load decodes every fact of
// the policy, and reflection was most of the cost. The strings of the
// fact share one copy of value.
func decodeFactJSON(kind string, value []byte) (Fact, bool) {
	d := factDecoder{s: string(value), ok: true}
	var f Fact
	switch kind {
	case keyRole:
		var v Role
		d.lit(`{"id":`)
		v.ID = d.id()
		v.PolicyID = d.policy()
		if d.ok && d.peek(`,"restricted_to":`) {
			d.lit(`,"restricted_to":`)
			v.RestrictedTo = d.strings()
		}
		if d.ok && d.peek(`,"public_keys":`) {
			d.lit(`,"public_keys":`)
			v.PublicKeys = d.strings()
		}
		f = v
	case keyResource:
		var v Resource
		d.lit(`{"id":`)
		v.ID = d.id()
		d.lit(`,"owner":`)
		v.Owner = d.id()
		v.PolicyID = d.policy()
		f = v
	case keyMembership:
		var v Membership
		d.lit(`{"role":`)
		v.Role = d.id()
		d.lit(`,"member":`)
		v.Member = d.id()
		d.lit(`,"admin_option":`)
		v.AdminOption = d.bool()
		d.lit(`,"ownership":`)
		v.Ownership = d.bool()
		v.PolicyID = d.policy()
		f = v
	case keyPermission:
		var v Permission
		d.lit(`{"role":`)
		v.Role = d.id()
		d.lit(`,"privilege":`)
		v.Privilege = d.str()
		d.lit(`,"resource":`)
		v.Resource = d.id()
		v.PolicyID = d.policy()
		f = v
	case keyAnnotation:
		var v Annotation
		d.lit(`{"resource":`)
		v.Resource = d.id()
		d.lit(`,"name":`)
		v.Name = d.str()
		d.lit(`,"value":`)
		v.Value = d.str()
		v.PolicyID = d.policy()
		f = v
	default:
		return nil, false
	}
	d.lit("}")
	if !d.ok || d.i != len(d.s) {
		return nil, false
	}
	return f, true
}

// factDecoder reads the JSON appendFactJSON writes; ok turns false at the
// first byte it does not expect, and every later call is then a no-op.
type factDecoder struct {
	s  string
	i  int
	ok bool
}

func (d *factDecoder) peek(lit string) bool {
	return len(d.s)-d.i >= len(lit) && d.s[d.i:d.i+len(lit)] == lit
}

func (d *factDecoder) lit(lit string) {
	if d.ok && d.peek(lit) {
		d.i += len(lit)
		return
	}
	d.ok = false
}

// str reads a string with no escape in it: printable ASCII but '"' and
// '\', or valid UTF-8 (encoding/json would replace invalid bytes) other
// than U+2028 and U+2029 (which appendJSONString escapes).
func (d *factDecoder) str() string {
	d.lit(`"`)
	if !d.ok {
		return ""
	}
	start, ascii := d.i, true
	for ; d.i < len(d.s); d.i++ {
		c := d.s[d.i]
		if c == '"' {
			break
		}
		if c < 0x20 || c == '\\' {
			d.ok = false
			return ""
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if d.i == len(d.s) {
		d.ok = false
		return ""
	}
	v := d.s[start:d.i]
	d.i++
	if !ascii && (!utf8.ValidString(v) || strings.ContainsRune(v, '\u2028') || strings.ContainsRune(v, '\u2029')) {
		d.ok = false
		return ""
	}
	return v
}

// id reads an ID as ID.UnmarshalText does; a malformed one is left to
// encoding/json, for its error.
func (d *factDecoder) id() ID {
	s := d.str()
	if !d.ok || s == "" {
		return ID{}
	}
	id, err := ParseID(s)
	if err != nil {
		d.ok = false
	}
	return id
}

// policy reads the optional policy field (absent for the zero ID).
func (d *factDecoder) policy() ID {
	if !d.ok || !d.peek(`,"policy":`) {
		return ID{}
	}
	d.lit(`,"policy":`)
	id := d.id()
	if id.IsZero() {
		d.ok = false // "policy":"" is not what appendFactJSON writes
	}
	return id
}

func (d *factDecoder) bool() bool {
	switch {
	case !d.ok:
		return false
	case d.peek("true"):
		d.i += len("true")
		return true
	case d.peek("false"):
		d.i += len("false")
		return false
	}
	d.ok = false
	return false
}

// strings reads a non-empty array of strings.
func (d *factDecoder) strings() []string {
	d.lit("[")
	var out []string
	for d.ok {
		out = append(out, d.str())
		if d.ok && d.peek("]") {
			d.i++
			return out
		}
		d.lit(",")
	}
	return nil
}
