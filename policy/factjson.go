package policy

import (
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
