package audit

import (
	"encoding/json"
	"strconv"
	"time"
)

// AppendJSON appends e encoded as encoding/json encodes it (the same
// bytes as json.Marshal(e)), without reflection: a Follower encodes every
// event it records, on the request's path, and json.Marshal was most of
// that cost. Events whose strings need escaping (quotes, backslashes,
// control characters, <, >, &, anything beyond ASCII) or whose times
// json.Marshal refuses take encoding/json itself, so the bytes never
// differ. The error is json.Marshal's.
func (e Event) AppendJSON(b []byte) ([]byte, error) {
	if !e.plainJSON() {
		out, err := json.Marshal(e)
		if err != nil {
			return b, err
		}
		return append(b, out...), nil
	}
	b = append(b, `{"id":"`...)
	b = append(b, e.ID...)
	b = append(b, `","at":"`...)
	b = e.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","node":"`...)
	b = append(b, e.Node...)
	b = append(b, `","kind":"`...)
	b = append(b, e.Kind...)
	b = append(b, `","action":"`...)
	b = append(b, e.Action...)
	b = append(b, `","outcome":"`...)
	b = append(b, e.Outcome...)
	b = append(b, '"')
	b = appendField(b, `,"identity":"`, e.Identity)
	b = appendField(b, `,"resource":"`, e.Resource)
	if e.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, int64(e.Version), 10)
	}
	b = appendField(b, `,"source":"`, e.Source)
	b = appendField(b, `,"authenticator":"`, e.Authenticator)
	b = appendField(b, `,"reason":"`, e.Reason)
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, e.Count, 10)
	}
	if !e.Last.IsZero() {
		b = append(b, `,"last":"`...)
		b = e.Last.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// appendField appends an omitempty string field, its name and opening
// quote given.
func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, name...)
	b = append(b, v...)
	return append(b, '"')
}

// plainJSON reports whether every string of e is written by encoding/json
// as it is (printable ASCII without '"', '\\', '<', '>' and '&') and both
// times are within what json.Marshal accepts (years 0 to 9999, zone
// offsets under 24 hours).
func (e Event) plainJSON() bool {
	for _, s := range [...]string{e.ID, e.Node, string(e.Kind), e.Action, e.Outcome, e.Identity, e.Resource,
		e.Source, e.Authenticator, e.Reason} {
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
				return false
			}
		}
	}
	return plainTime(e.At) && (e.Last.IsZero() || plainTime(e.Last))
}

func plainTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off > -24*3600 && off < 24*3600
}
