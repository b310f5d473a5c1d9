package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Conversions between the policy engine's types and the API's. They are
// the only place the two meet.

func idString(id policy.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func idStrings(ids []policy.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

func factToProto(f policy.Fact) *sowerv1.PolicyFact {
	switch f := f.(type) {
	case policy.Role:
		return &sowerv1.PolicyFact{Fact: &sowerv1.PolicyFact_Role{Role: &sowerv1.RoleFact{
			Id: f.ID.String(), Policy: idString(f.PolicyID), RestrictedTo: f.RestrictedTo}}}
	case policy.Resource:
		return &sowerv1.PolicyFact{Fact: &sowerv1.PolicyFact_Resource{Resource: &sowerv1.ResourceFact{
			Id: f.ID.String(), Owner: idString(f.Owner), Policy: idString(f.PolicyID)}}}
	case policy.Membership:
		return &sowerv1.PolicyFact{Fact: &sowerv1.PolicyFact_Membership{Membership: membershipToProto(f)}}
	case policy.Permission:
		return &sowerv1.PolicyFact{Fact: &sowerv1.PolicyFact_Permission{Permission: permissionToProto(f)}}
	case policy.Annotation:
		return &sowerv1.PolicyFact{Fact: &sowerv1.PolicyFact_Annotation{Annotation: annotationToProto(f)}}
	}
	return nil
}

func factsToProto(fs []policy.Fact) []*sowerv1.PolicyFact {
	out := make([]*sowerv1.PolicyFact, 0, len(fs))
	for _, f := range fs {
		out = append(out, factToProto(f))
	}
	return out
}

func membershipToProto(m policy.Membership) *sowerv1.RoleMembership {
	return &sowerv1.RoleMembership{Role: m.Role.String(), Member: m.Member.String(), AdminOption: m.AdminOption,
		Ownership: m.Ownership, Policy: idString(m.PolicyID)}
}

func membershipsToProto(ms []policy.Membership) []*sowerv1.RoleMembership {
	out := make([]*sowerv1.RoleMembership, len(ms))
	for i, m := range ms {
		out[i] = membershipToProto(m)
	}
	return out
}

func permissionToProto(p policy.Permission) *sowerv1.ResourcePermission {
	return &sowerv1.ResourcePermission{Role: p.Role.String(), Privilege: p.Privilege, Resource: p.Resource.String(), Policy: idString(p.PolicyID)}
}

func annotationToProto(a policy.Annotation) *sowerv1.ResourceAnnotation {
	return &sowerv1.ResourceAnnotation{Resource: a.Resource.String(), Name: a.Name, Value: a.Value, Policy: idString(a.PolicyID)}
}

func resourceToProto(r policy.ResourceInfo) *sowerv1.ResourceInfo {
	out := &sowerv1.ResourceInfo{Id: r.ID.String(), Owner: idString(r.Owner), Policy: idString(r.PolicyID), RestrictedTo: r.RestrictedTo}
	for _, p := range r.Permissions {
		out.Permissions = append(out.Permissions, permissionToProto(p))
	}
	for _, a := range r.Annotations {
		out.Annotations = append(out.Annotations, annotationToProto(a))
	}
	return out
}

func modeToProto(m string) sowerv1.LoadMode {
	switch m {
	case "append":
		return sowerv1.LoadMode_LOAD_MODE_APPEND
	case "update":
		return sowerv1.LoadMode_LOAD_MODE_UPDATE
	case "replace":
		return sowerv1.LoadMode_LOAD_MODE_REPLACE
	}
	return sowerv1.LoadMode_LOAD_MODE_UNSPECIFIED
}

func versionsToProto(vs []etcdstore.PolicyVersion) []*sowerv1.PolicyVersion {
	out := make([]*sowerv1.PolicyVersion, len(vs))
	for i, v := range vs {
		sum := sha256.Sum256([]byte(v.Text))
		out[i] = &sowerv1.PolicyVersion{
			Id: v.Policy, Version: v.Version, PolicyText: v.Text, PolicySha256: hex.EncodeToString(sum[:]),
			Role: v.Role, ClientIp: v.ClientIP, Mode: modeToProto(v.Mode),
			CreatedAt: v.CreatedAt.UTC().Format(time.RFC3339Nano), FinishedAt: v.FinishedAt.UTC().Format(time.RFC3339Nano),
		}
	}
	return out
}

// describeChanges describes the records a dry run touches, before and
// after, as Conjur's dry run reports them: the roles and resources created
// and deleted, and those whose memberships, permissions, annotations or
// owner change.
func describeChanges(before *policy.Graph, cs *policy.ChangeSet, caller policy.ID) *sowerv1.RecordChanges {
	after := policy.NewGraph(before.Facts()...)
	applied := *cs
	applied.Revision = after.Revision()
	if err := after.Apply(&applied); err != nil {
		return nil
	}
	created, deleted, touched := map[policy.ID]bool{}, map[policy.ID]bool{}, map[policy.ID]bool{}
	record := func(f policy.Fact, into map[policy.ID]bool) {
		switch f := f.(type) {
		case policy.Role:
			into[f.ID] = true
		case policy.Resource:
			into[f.ID] = true
			touched[f.Owner] = true
		case policy.Membership:
			touched[f.Role], touched[f.Member] = true, true
		case policy.Permission:
			touched[f.Role], touched[f.Resource] = true, true
		case policy.Annotation:
			touched[f.Resource] = true
		}
	}
	for _, f := range cs.Created {
		record(f, created)
	}
	for _, f := range cs.Deleted {
		record(f, deleted)
	}
	for _, f := range cs.Updated {
		record(f, touched)
	}
	out := &sowerv1.RecordChanges{}
	bi, ai := newRecordIndex(before), newRecordIndex(after)
	for _, id := range sortedIDs(created) {
		if r := ai.describe(id); r != nil {
			out.Created = append(out.Created, r)
		}
	}
	for _, id := range sortedIDs(deleted) {
		if created[id] {
			continue
		}
		if r := bi.describe(id); r != nil {
			out.Deleted = append(out.Deleted, r)
		}
	}
	for _, id := range sortedIDs(touched) {
		if created[id] || deleted[id] {
			continue
		}
		b, a := bi.describe(id), ai.describe(id)
		if b != nil && a != nil {
			out.UpdatedBefore = append(out.UpdatedBefore, b)
			out.UpdatedAfter = append(out.UpdatedAfter, a)
		}
	}
	redact(out, func(id string) bool {
		pid, err := policy.ParseID(id)
		return err != nil || before.Visible(caller, pid) || after.Visible(caller, pid)
	})
	return out
}

// redact masks, as Conjur's dry run does, every id the caller cannot see
// before or after the load: "acme:policy:[REDACTED]".
func redact(rc *sowerv1.RecordChanges, visible func(string) bool) {
	seen := map[string]string{}
	mask := func(id string) string {
		if id == "" {
			return id
		}
		if m, ok := seen[id]; ok {
			return m
		}
		m := id
		if !visible(id) {
			if a, rest, ok := strings.Cut(id, ":"); ok {
				kind, _, _ := strings.Cut(rest, ":")
				m = a + ":" + kind + ":[REDACTED]"
			}
		}
		seen[id] = m
		return m
	}
	for _, l := range [][]*sowerv1.Record{rc.Created, rc.Deleted, rc.UpdatedBefore, rc.UpdatedAfter} {
		for _, r := range l {
			r.Id, r.Owner, r.Policy = mask(r.Id), mask(r.Owner), mask(r.Policy)
			for _, p := range append(slices.Clone(r.Permissions), r.Permitted...) {
				p.Role, p.Resource, p.Policy = mask(p.Role), mask(p.Resource), mask(p.Policy)
			}
			for _, a := range r.Annotations {
				a.Policy = mask(a.Policy)
			}
			for i := range r.Members {
				r.Members[i] = mask(r.Members[i])
			}
			for i := range r.Memberships {
				r.Memberships[i] = mask(r.Memberships[i])
			}
		}
	}
}

func sortedIDs(m map[policy.ID]bool) []policy.ID {
	out := make([]policy.ID, 0, len(m))
	for id := range m {
		if !id.IsZero() {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b policy.ID) int { return cmp.Compare(a.String(), b.String()) })
	return out
}

// recordIndex describes records of one graph. The graph answers the
// permissions on a resource; the permissions a role holds are indexed here.
type recordIndex struct {
	g    *policy.Graph
	held map[policy.ID][]policy.Permission
}

func newRecordIndex(g *policy.Graph) *recordIndex {
	ix := &recordIndex{g: g, held: map[policy.ID][]policy.Permission{}}
	for _, f := range g.Facts() {
		if p, ok := f.(policy.Permission); ok {
			ix.held[p.Role] = append(ix.held[p.Role], p)
		}
	}
	return ix
}

func (ix *recordIndex) describe(id policy.ID) *sowerv1.Record {
	role, isRole := ix.g.Role(id)
	res, isResource := ix.g.Resource(id)
	if !isRole && !isResource {
		return nil
	}
	r := &sowerv1.Record{Id: id.String(), IsRole: isRole}
	if isResource {
		r.Owner, r.Policy = idString(res.Owner), idString(res.PolicyID)
		for _, a := range res.Annotations {
			r.Annotations = append(r.Annotations, annotationToProto(a))
		}
		if !isRole {
			for _, p := range res.Permissions {
				r.Permitted = append(r.Permitted, permissionToProto(p))
			}
		}
	}
	if isRole {
		if r.Policy == "" {
			r.Policy = idString(role.PolicyID)
		}
		r.RestrictedTo = role.RestrictedTo
		for _, m := range role.Members {
			r.Members = append(r.Members, m.Member.String())
		}
		for _, m := range ix.g.Memberships(id) {
			r.Memberships = append(r.Memberships, m.Role.String())
		}
		for _, p := range ix.held[id] {
			r.Permissions = append(r.Permissions, permissionToProto(p))
		}
	}
	return r
}
