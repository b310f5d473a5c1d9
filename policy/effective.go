package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Limits of an effective policy, Conjur's defaults
// (effective_policy_max_depth and effective_policy_max_limit).
const (
	MaxEffectiveDepth = 64
	MaxEffectiveLimit = 100_000
)

// ErrEffectiveTooLarge is wrapped when the branch holds more than the limit
// asked for; the message is Conjur's (CONJ00164E).
var ErrEffectiveTooLarge = errors.New("policy: effective policy exceeds the limit")

// EffectiveQuery asks for the effective policy of a branch.
type EffectiveQuery struct {
	// Policy is the policy at the top of the branch ("root" for all).
	Policy ID
	// Viewer sees the records it may see; others are left out.
	Viewer ID
	// Depth is how many levels of ids below the policy are shown (0: the
	// policy alone; MaxEffectiveDepth at most).
	Depth int
	// Limit bounds the records (users aside, as Conjur counts them), their
	// annotations and permissions in the branch (MaxEffectiveLimit at
	// most).
	Limit int
}

// Statement is one statement of an effective policy, in Conjur's shape: a
// tag ("user", "permit", ...) and its fields in output order.
type Statement struct {
	Tag    string
	Fields []Field
}

// Field is one attribute of a statement. Value is a string, a []string, a
// Ref, a []Ref, a []Field (annotations) or a []Statement (a body).
type Field struct {
	Name  string
	Value any
}

// Ref is a reference to a record: its tag and its id, relative to the
// enclosing policy or absolute (leading "/").
type Ref struct {
	Tag string
	ID  string
}

// EffectivePolicy is every statement currently in force under a policy,
// nested policies to the depth asked, as Conjur's `policy fetch` (its
// EffectivePolicy::BuildPolicyTree) writes it: records with their owner
// (when it is not the enclosing policy), annotations, restricted_to and
// layers; permits grouped by role and resource, placed with the resource;
// grants of each role to the members in the branch, placed with the role.
// For root the answer is root's body; for another policy a list holding
// that policy.
//
// Loading the YAML of the result into an empty account's root gives the
// same records, owners, annotations, permissions and memberships (but
// admin options and the policies records were loaded through).
func (g *Graph) EffectivePolicy(q EffectiveQuery) ([]Statement, error) {
	top := q.Policy.Name
	if top == "root" {
		top = ""
	}
	absDepth := strings.Count(top, "/") + q.Depth
	if top == "" {
		absDepth = q.Depth
	}
	all, _ := g.Resources(ResourceQuery{Account: q.Policy.Account, Viewer: q.Viewer})

	// Every record's path: its identifier, and a user's the path of its
	// policy ("alice@dev-db" in policy dev/db is dev/db/alice).
	policies := map[string]bool{"": true}
	for _, r := range all {
		if r.ID.Kind == KindPolicy && r.ID.Name != "root" {
			policies[r.ID.Name] = true
		}
	}
	byDashes := map[string]string{}
	for p := range policies {
		d := strings.ReplaceAll(p, "/", "-")
		if old, ok := byDashes[d]; !ok || p < old {
			byDashes[d] = p
		}
	}
	path := func(id ID) string {
		if id.Kind == KindUser {
			if name, pol, ok := strings.Cut(id.Name, "@"); ok {
				if p, ok := byDashes[pol]; ok && p != "" {
					return p + "/" + name
				}
			}
		}
		return id.Name
	}
	inBranch := func(id ID) bool {
		p := path(id)
		if id.Kind == KindPolicy && id.Name == "root" {
			return false
		}
		if top != "" && p != top && !strings.HasPrefix(p, top+"/") {
			return false
		}
		return strings.Count(p, "/") <= absDepth
	}
	// parent is the nearest enclosing policy of a path.
	parent := func(p string) string {
		for {
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				return ""
			}
			p = p[:i]
			if policies[p] {
				return p
			}
		}
	}
	rel := func(p, pol string) string {
		if pol == "" {
			return p
		}
		return strings.TrimPrefix(p, pol+"/")
	}
	tag := func(kind string) string { return strings.ReplaceAll(kind, "_", "-") }

	var scope []ResourceInfo
	inScope := map[ID]bool{}
	count := 0
	for _, r := range all {
		if !effectiveKinds[r.ID.Kind] || (r.PolicyID.IsZero() && r.ID.Kind != KindPolicy) {
			// Automatic roles and public keys are not statements; a
			// record no load made (the bootstrap's admin user) is not
			// policy either.
			continue
		}
		if inBranch(r.ID) && (top == "" || path(r.ID) != top || r.ID.Kind == KindPolicy) {
			scope = append(scope, r)
			inScope[r.ID] = true
			if r.ID.Kind != KindUser {
				// Conjur counts the records but users, with their
				// annotations and permissions.
				count += 1 + len(r.Annotations) + len(r.Permissions)
			}
		}
	}
	if count > q.Limit {
		return nil, fmt.Errorf("%w: CONJ00164E Policy max allowed 'limit' = %d exceeded. Value for policy is: %d", ErrEffectiveTooLarge, q.Limit, count)
	}
	// Users last, as Conjur fetches them after the other resources.
	slices.SortStableFunc(scope, func(a, b ResourceInfo) int {
		return boolInt(a.ID.Kind == KindUser) - boolInt(b.ID.Kind == KindUser)
	})

	bodies := map[string]*[]Statement{}
	nodes := map[string]*Statement{}
	body := func(pol string) *[]Statement {
		if b, ok := bodies[pol]; ok {
			return b
		}
		b := &[]Statement{}
		bodies[pol] = b
		return b
	}
	rootOwner := ID{}
	if r, ok := g.Resource(NewID(q.Policy.Account, KindPolicy, "root")); ok {
		rootOwner = r.Owner
	}
	for _, r := range scope {
		p := path(r.ID)
		par := parent(p)
		st := Statement{Tag: tag(r.ID.Kind), Fields: []Field{{"id", rel(p, par)}}}
		defOwner := NewID(r.ID.Account, KindPolicy, par)
		if par == "" {
			defOwner = rootOwner
		}
		if r.Owner != defOwner && !r.Owner.IsZero() {
			st.Fields = append(st.Fields, Field{"owner", Ref{tag(r.Owner.Kind), "/" + path(r.Owner)}})
		}
		var annotations []Field
		for _, a := range r.Annotations {
			switch {
			case r.ID.Kind == KindVariable && a.Name == "conjur/kind":
				st.Fields = append(st.Fields, Field{"kind", a.Value})
			case r.ID.Kind == KindVariable && a.Name == "conjur/mime_type":
				st.Fields = append(st.Fields, Field{"mime_type", a.Value})
			default:
				annotations = append(annotations, Field{a.Name, a.Value})
			}
		}
		if r.ID.Kind == KindHostFactory {
			var layers []Ref
			for _, m := range g.Memberships(r.ID) {
				if m.Role.Kind == KindLayer && !m.Ownership {
					layers = append(layers, Ref{"layer", rel(path(m.Role), par)})
				}
			}
			st.Fields = append(st.Fields, Field{"layers", layers})
		}
		if len(r.RestrictedTo) > 0 {
			st.Fields = append(st.Fields, Field{"restricted_to", r.RestrictedTo})
		}
		if len(annotations) > 0 {
			st.Fields = append(st.Fields, Field{"annotations", annotations})
		}
		if r.ID.Kind == KindPolicy {
			st.Fields = append(st.Fields, Field{"body", body(p)})
			if p == top {
				nodes[""] = &st
				continue
			}
		}
		*body(par) = append(*body(par), st)

		// Permits on r, one per role, placed with r.
		privs := map[ID][]string{}
		var roles []ID
		for _, pm := range r.Permissions {
			if _, ok := privs[pm.Role]; !ok {
				roles = append(roles, pm.Role)
			}
			privs[pm.Role] = append(privs[pm.Role], pm.Privilege)
		}
		for _, role := range roles {
			rp := path(role)
			roleRef := "/" + rp
			if parent(rp) == par {
				roleRef = rel(rp, par)
			}
			ps := privs[role]
			slices.Sort(ps)
			*body(par) = append(*body(par), Statement{Tag: "permit", Fields: []Field{
				{"role", Ref{tag(role.Kind), roleRef}}, {"privileges", ps}, {"resource", Ref{tag(r.ID.Kind), rel(p, par)}},
			}})
		}
	}
	// Grants: each role in the branch to its members in the branch (a
	// host factory's layers are written with the host factory), placed
	// with the role.
	var grantRoles []ID
	members := map[ID][]Ref{}
	for _, r := range scope {
		for _, m := range g.Memberships(r.ID) {
			if m.Ownership || r.ID.Kind == KindHostFactory || !inScope[m.Role] {
				continue
			}
			if _, ok := members[m.Role]; !ok {
				grantRoles = append(grantRoles, m.Role)
			}
			members[m.Role] = append(members[m.Role], Ref{tag(r.ID.Kind), "/" + path(r.ID)})
		}
	}
	for _, role := range grantRoles {
		rp := path(role)
		par := parent(rp)
		ms := members[role]
		slices.SortFunc(ms, func(a, b Ref) int { return strings.Compare(a.Tag+a.ID, b.Tag+b.ID) })
		*body(par) = append(*body(par), Statement{Tag: "grant", Fields: []Field{{"role", Ref{tag(role.Kind), rel(rp, par)}}, {"members", ms}}})
	}
	if top == "" {
		return *body(""), nil
	}
	st, ok := nodes[""]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrPolicyNotFound, q.Policy)
	}
	// The top policy's id is its last segment, as Conjur writes it.
	st.Fields[0].Value = top[strings.LastIndexByte(top, '/')+1:]
	return []Statement{*st}, nil
}

// effectiveKinds are the kinds an effective policy declares.
var effectiveKinds = map[string]bool{
	KindUser: true, KindHost: true, KindGroup: true, KindLayer: true, KindPolicy: true,
	KindVariable: true, KindWebservice: true, KindHostFactory: true,
}

// EffectiveJSON writes statements as Conjur's JSON statement list:
// [{"tag":{"field":value,...}},...].
func EffectiveJSON(sts []Statement) []byte {
	var b bytes.Buffer
	writeJSONStatements(&b, sts)
	return b.Bytes()
}

func writeJSONStatements(b *bytes.Buffer, sts []Statement) {
	b.WriteByte('[')
	for i, st := range sts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{` + jsonString(st.Tag) + `:{`)
		for j, f := range st.Fields {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(jsonString(f.Name) + ":")
			writeJSONValue(b, f.Value)
		}
		b.WriteString("}}")
	}
	b.WriteByte(']')
}

func writeJSONValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case string:
		b.WriteString(jsonString(v))
	case []string:
		b.WriteByte('[')
		for i, s := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(jsonString(s))
		}
		b.WriteByte(']')
	case Ref:
		b.WriteString(`{` + jsonString(v.Tag) + ":" + jsonString(v.ID) + `}`)
	case []Ref:
		b.WriteByte('[')
		for i, r := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONValue(b, r)
		}
		b.WriteByte(']')
	case []Field:
		b.WriteByte('{')
		for i, f := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(jsonString(f.Name) + ":")
			writeJSONValue(b, f.Value)
		}
		b.WriteByte('}')
	case *[]Statement:
		writeJSONStatements(b, *v)
	}
}

func jsonString(s string) string {
	out, _ := json.Marshal(s)
	return string(out)
}

// EffectiveYAML writes statements as policy YAML that loads back into the
// same records, as Conjur's `policy fetch` answers.
func EffectiveYAML(sts []Statement) []byte {
	var b bytes.Buffer
	b.WriteString("---\n")
	if len(sts) == 0 {
		return []byte("--- []\n")
	}
	writeYAMLStatements(&b, sts, "")
	return b.Bytes()
}

func writeYAMLStatements(b *bytes.Buffer, sts []Statement, indent string) {
	for _, st := range sts {
		fmt.Fprintf(b, "%s- !%s\n", indent, st.Tag)
		for _, f := range st.Fields {
			writeYAMLField(b, f, indent+"  ")
		}
	}
}

func writeYAMLField(b *bytes.Buffer, f Field, indent string) {
	key := yamlScalar(f.Name)
	switch v := f.Value.(type) {
	case string:
		fmt.Fprintf(b, "%s%s: %s\n", indent, key, yamlScalar(v))
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = yamlScalar(s)
		}
		fmt.Fprintf(b, "%s%s: [%s]\n", indent, key, strings.Join(parts, ", "))
	case Ref:
		fmt.Fprintf(b, "%s%s: !%s %s\n", indent, key, v.Tag, yamlScalar(v.ID))
	case []Ref:
		parts := make([]string, len(v))
		for i, r := range v {
			parts[i] = "!" + r.Tag + " " + yamlScalar(r.ID)
		}
		fmt.Fprintf(b, "%s%s: [%s]\n", indent, key, strings.Join(parts, ", "))
	case []Field:
		fmt.Fprintf(b, "%s%s:\n", indent, key)
		for _, a := range v {
			writeYAMLField(b, a, indent+"  ")
		}
	case *[]Statement:
		if len(*v) == 0 {
			fmt.Fprintf(b, "%s%s: []\n", indent, key)
			return
		}
		fmt.Fprintf(b, "%s%s:\n", indent, key)
		writeYAMLStatements(b, *v, indent)
	}
}

// plainScalar matches what YAML reads back as the same string unquoted.
var plainScalar = regexp.MustCompile(`^[A-Za-z_/]([A-Za-z0-9_./@+ -]*[A-Za-z0-9_./@+-])?$|^[0-9.]+/[0-9]+$`)

// yamlScalar writes s plain when YAML reads it back as the same string,
// else double-quoted (JSON's escapes are YAML's).
func yamlScalar(s string) string {
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~":
		return yamlQuoted(s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil || !plainScalar.MatchString(s) {
		return yamlQuoted(s)
	}
	return s
}

// yamlQuoted is s double-quoted, with JSON's escapes but for HTML's.
func yamlQuoted(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}
