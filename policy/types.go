package policy

import (
	"strings"
	"unicode"
)

// The statement types of the policy language, described as data: one table
// entry per YAML tag, one entry per attribute, and one function (the parser)
// that applies them. The table follows Conjur's policy parser attribute for
// attribute, because what it accepts, how it coerces values and the words of
// its errors are what Conjur users already rely on.

// fieldKind is what values an attribute accepts.
type fieldKind int

const (
	fString fieldKind = iota + 1
	fInteger
	fBoolean
	fCIDR
	fHash
	fRole     // anything that is a role
	fResource // anything that is a resource
	fMember   // a !member, or a role (made a member without admin option)
	fLayer    // a !layer
	fBody     // a policy body: a sequence of statements
)

// kindNames are the words Conjur's type errors use ("Expected a Role …").
var kindNames = map[fieldKind]string{
	fString: "string", fInteger: "integer", fBoolean: "boolean", fCIDR: "CIDR",
	fHash: "hash", fRole: "Role", fResource: "Resource", fMember: "Member",
	fLayer: "Layer", fBody: "sequence",
}

// fieldSpec describes one attribute.
type fieldSpec struct {
	name string
	// plural is the attribute's plural spelling ("members"); both spellings
	// accept one value or a list. Empty for attributes that are singular.
	plural string
	kind   fieldKind
	// valueType is the type of an untagged mapping or scalar given as the
	// attribute's value (member: {role: …} is a !member); nil when such a
	// value is plain data.
	valueType string
}

// typeSpec describes one statement type.
type typeSpec struct {
	tag string // the YAML tag without '!'
	// class is the name Conjur's messages use for the type ("HostFactory").
	class string
	// kind is the Conjur kind of the role and resource the record declares.
	kind     string
	role     bool // declares (or refers to) a role
	resource bool // declares (or refers to) a resource
	// record is set for the types a policy creates records of.
	record bool
	// deletion marks !delete, !deny and !revoke.
	deletion bool
	// hash marks the type of annotations: a plain mapping.
	hash   bool
	fields []fieldSpec
}

func (t *typeSpec) field(name string) *fieldSpec {
	for i := range t.fields {
		f := &t.fields[i]
		if f.name == name || (f.plural != "" && f.plural == name) {
			return f
		}
	}
	return nil
}

func (t *typeSpec) hasField(name string) bool { return t.field(name) != nil }

// Attributes every declarable record has (Conjur's ActsAsResource).
var resourceFields = []fieldSpec{
	{name: "id", kind: fString},
	{name: "account", kind: fString},
	{name: "owner", kind: fRole},
	{name: "annotations", kind: fHash, valueType: "hash"},
}

func withResource(extra ...fieldSpec) []fieldSpec {
	return append(append([]fieldSpec(nil), resourceFields...), extra...)
}

var cidrField = fieldSpec{name: "restricted_to", plural: "restricted_tos", kind: fCIDR}

// statementTypes is the table, by YAML tag; typesByClass indexes it by class.
var statementTypes, typesByClass = buildTypes()

func buildTypes() (byTag, byClass map[string]*typeSpec) {
	byTag, byClass = map[string]*typeSpec{}, map[string]*typeSpec{}
	for _, t := range []*typeSpec{
		{tag: "role", class: "Role", role: true, record: true, fields: []fieldSpec{
			{name: "id", kind: fString}, {name: "kind", kind: fString}, {name: "account", kind: fString},
		}},
		{tag: "resource", class: "Resource", resource: true, record: true, fields: withResource(
			fieldSpec{name: "kind", kind: fString},
		)},
		{tag: "user", class: "User", kind: KindUser, role: true, resource: true, record: true, fields: withResource(
			fieldSpec{name: "uidnumber", kind: fInteger},
			fieldSpec{name: "public_key", plural: "public_keys", kind: fString},
			cidrField,
		)},
		{tag: "group", class: "Group", kind: KindGroup, role: true, resource: true, record: true, fields: withResource(
			fieldSpec{name: "gidnumber", kind: fInteger},
		)},
		{tag: "host", class: "Host", kind: KindHost, role: true, resource: true, record: true, fields: withResource(cidrField)},
		{tag: "layer", class: "Layer", kind: KindLayer, role: true, resource: true, record: true, fields: withResource()},
		{tag: "variable", class: "Variable", kind: KindVariable, resource: true, record: true, fields: withResource(
			fieldSpec{name: "kind", kind: fString},
			fieldSpec{name: "mime_type", kind: fString},
		)},
		{tag: "webservice", class: "Webservice", kind: KindWebservice, resource: true, record: true, fields: withResource()},
		{tag: "host-factory", class: "HostFactory", kind: KindHostFactory, role: true, resource: true, record: true, fields: withResource(
			fieldSpec{name: "role", kind: fRole, valueType: "role"},
			fieldSpec{name: "layer", plural: "layers", kind: fLayer, valueType: "layer"},
		)},
		{tag: "policy", class: "Policy", kind: KindPolicy, role: true, resource: true, record: true, fields: withResource(
			fieldSpec{name: "body", kind: fBody},
		)},
		{tag: "automatic-role", class: "AutomaticRole", kind: "@", role: true, fields: []fieldSpec{
			{name: "record", kind: fRole},
			{name: "role_name", kind: fString},
		}},
		{tag: "member", class: "Member", fields: []fieldSpec{
			{name: "role", plural: "roles", kind: fRole, valueType: "role"},
			{name: "admin", kind: fBoolean},
		}},
		{tag: "grant", class: "Grant", fields: []fieldSpec{
			{name: "role", plural: "roles", kind: fRole, valueType: "role"},
			{name: "member", plural: "members", kind: fMember, valueType: "member"},
		}},
		{tag: "revoke", class: "Revoke", deletion: true, fields: []fieldSpec{
			{name: "role", plural: "roles", kind: fRole, valueType: "role"},
			{name: "member", plural: "members", kind: fRole, valueType: "member"},
		}},
		{tag: "permit", class: "Permit", fields: []fieldSpec{
			{name: "role", plural: "roles", kind: fRole, valueType: "role"},
			{name: "privilege", plural: "privileges", kind: fString},
			{name: "resource", plural: "resources", kind: fResource, valueType: "resource"},
		}},
		{tag: "deny", class: "Deny", deletion: true, fields: []fieldSpec{
			{name: "role", plural: "roles", kind: fRole, valueType: "role"},
			{name: "privilege", plural: "privileges", kind: fString},
			{name: "resource", plural: "resources", kind: fResource, valueType: "resource"},
		}},
		{tag: "delete", class: "Delete", deletion: true, fields: []fieldSpec{
			{name: "record", plural: "records", kind: fResource},
		}},
	} {
		byTag[t.tag] = t
		byClass[t.class] = t
	}
	// The hash type is what an untagged annotations mapping becomes; no tag
	// names it.
	byTag["hash"] = &typeSpec{tag: "hash", class: "Hash", hash: true}
	return byTag, byClass
}

// tagAliases are other spellings Conjur accepts for a tag.
var tagAliases = map[string]string{
	"managed-role": "automatic-role",
}

// lookupTag finds the type a YAML tag names, the way Conjur does: the text
// after the first '!' is underscored and camelized into a class name, so
// "!host-factory", "!host_factory" and "!HostFactory" all name HostFactory.
// ok is false when the tag has no '!' (a !!str-style tag, which Conjur
// ignores); t is nil when it names no type.
func lookupTag(tag string) (t *typeSpec, ok bool) {
	i := strings.IndexByte(tag, '!')
	if i < 0 {
		return nil, false
	}
	name := tag[i+1:]
	if alias, found := tagAliases[name]; found {
		name = alias
	}
	return typesByClass[camelize(underscore(name))], true
}

// underscore is ActiveSupport's String#underscore for the characters a tag
// uses: "HostFactory" and "host-factory" become "host_factory".
func underscore(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		switch {
		case c == '-':
			b.WriteByte('_')
			continue
		case unicode.IsUpper(c) && i > 0:
			prev := r[i-1]
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// camelize is ActiveSupport's String#camelize: "host_factory" becomes
// "HostFactory".
func camelize(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		if part == "" {
			continue
		}
		r := []rune(part)
		b.WriteRune(unicode.ToUpper(r[0]))
		b.WriteString(string(r[1:]))
	}
	return b.String()
}
