package policy

// Storage keys. A key is a type prefix and the fact's primary key, the same
// columns Conjur's tables use as primary key, each component escaped so that
// '/' only ever separates components:
//
//	role/<role id>
//	resource/<resource id>
//	membership/<role id>/<member id>/<grant|owner>
//	permission/<resource id>/<privilege>/<role id>
//	annotation/<resource id>/<name>
//
// for example "membership/myorg:group:ops/myorg:host:app%2Fweb-01/grant".
// The caller prepends its own prefix (say "/sower/policy/"). Keys are
// stable: a fact keeps its key when its other fields change, which is how
// an update is told apart from a create.
const (
	keyRole       = "role"
	keyResource   = "resource"
	keyMembership = "membership"
	keyPermission = "permission"
	keyAnnotation = "annotation"
)

// Keys are built often (several times for every fact a load declares), so
// they are appended to a byte slice: Key writes into a buffer on the stack
// and allocates only the string it returns, and the planner looks keys up
// in its maps from a reused buffer without allocating at all.

// keyBufSize is the stack buffer Key writes into; longer keys still work,
// the buffer then grows on the heap.
const keyBufSize = 128

// appendEscaped appends s with '%' and '/' escaped.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '%':
			esc = "%25"
		case '/':
			esc = "%2F"
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendPart appends '/' and s, escaped.
func appendPart(b []byte, s string) []byte {
	return appendEscaped(append(b, '/'), s)
}

// appendID appends '/' and an escaped ID.
func appendID(b []byte, id ID) []byte {
	b = appendPart(b, id.Account)
	b = appendEscaped(append(b, ':'), id.Kind)
	return appendEscaped(append(b, ':'), id.Name)
}

// appendRoleKey appends the key of the role id.
func appendRoleKey(b []byte, id ID) []byte {
	return appendID(append(b, keyRole...), id)
}

// appendResourceKey appends the key of the resource id.
func appendResourceKey(b []byte, id ID) []byte {
	return appendID(append(b, keyResource...), id)
}

func (f Membership) appendKey(b []byte) []byte {
	b = append(b, keyMembership...)
	b = appendID(b, f.Role)
	b = appendID(b, f.Member)
	if f.Ownership {
		return append(b, "/owner"...)
	}
	return append(b, "/grant"...)
}

func (f Permission) appendKey(b []byte) []byte {
	b = append(b, keyPermission...)
	b = appendID(b, f.Resource)
	b = appendPart(b, f.Privilege)
	return appendID(b, f.Role)
}

func (f Annotation) appendKey(b []byte) []byte {
	b = append(b, keyAnnotation...)
	b = appendID(b, f.Resource)
	return appendPart(b, f.Name)
}

// appendKey appends f.Key().
func appendKey(b []byte, f Fact) []byte {
	switch f := f.(type) {
	case Role:
		return appendRoleKey(b, f.ID)
	case Resource:
		return appendResourceKey(b, f.ID)
	case Membership:
		return f.appendKey(b)
	case Permission:
		return f.appendKey(b)
	case Annotation:
		return f.appendKey(b)
	}
	return b
}

func (f Role) Key() string {
	var buf [keyBufSize]byte
	return string(appendRoleKey(buf[:0], f.ID))
}

func (f Resource) Key() string {
	var buf [keyBufSize]byte
	return string(appendResourceKey(buf[:0], f.ID))
}

func (f Membership) Key() string {
	var buf [keyBufSize]byte
	return string(f.appendKey(buf[:0]))
}

func (f Permission) Key() string {
	var buf [keyBufSize]byte
	return string(f.appendKey(buf[:0]))
}

func (f Annotation) Key() string {
	var buf [keyBufSize]byte
	return string(f.appendKey(buf[:0]))
}
