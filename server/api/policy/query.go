package policy

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/policy"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/server/api/rpcctx"
	"github.com/sowerproject/sower/server/etcdstore"
)

// The read RPCs answer from the graph; what the caller cannot see is
// NotFound, exactly like what does not exist.

// notFound is Conjur's RecordNotFound message.
func notFound(id policy.ID) error {
	kind := id.Kind
	if kind != "" {
		kind = strings.ToUpper(kind[:1]) + kind[1:]
	}
	return status.Errorf(codes.NotFound, "%s '%s' not found in account '%s'", kind, id.Name, id.Account)
}

// visibleResource returns the resource's id if it exists and the caller
// sees it.
func (s *Service) visibleResource(ctx context.Context, account, kind, identifier string) (policy.ID, policy.ID, *policy.Graph, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return policy.ID{}, policy.ID{}, nil, err
	}
	if err := s.checkAccount(account); err != nil {
		return policy.ID{}, policy.ID{}, nil, err
	}
	id, err := s.ref(kind, identifier)
	if err != nil {
		return policy.ID{}, policy.ID{}, nil, err
	}
	g := s.c.Store.Graph()
	if !g.Visible(caller, id) {
		return policy.ID{}, policy.ID{}, nil, notFound(id)
	}
	return caller, id, g, nil
}

// holds reports whether caller has role, itself or through memberships.
func holds(g *policy.Graph, caller, role policy.ID) bool {
	if caller == role {
		return true
	}
	_, found := slices.BinarySearchFunc(g.AllRoles(caller), role, func(a, b policy.ID) int {
		return strings.Compare(a.String(), b.String())
	})
	return found
}

// maySee reports whether caller may see role: it holds it, or sees the
// role's resource.
func maySee(g *policy.Graph, caller, role policy.ID) bool {
	return holds(g, caller, role) || g.Visible(caller, role)
}

// CheckPermission answers whether a role may exercise a privilege.
func (s *Service) CheckPermission(ctx context.Context, req *sowerv1.CheckPermissionRequest) (*sowerv1.CheckPermissionResponse, error) {
	caller, id, g, err := s.visibleResource(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	if req.GetPrivilege() == "" {
		return nil, status.Error(codes.InvalidArgument, "privilege is required, for example execute")
	}
	role := caller
	if r := req.GetRole(); r != "" {
		if role, err = s.roleRef(r); err != nil {
			return nil, err
		}
		if _, ok := g.Role(role); !ok || !maySee(g, caller, role) {
			return nil, status.Errorf(codes.PermissionDenied, "you may not ask about %s: it does not exist or you cannot see it", r)
		}
	}
	return &sowerv1.CheckPermissionResponse{Allowed: g.Allowed(role, req.GetPrivilege(), id)}, nil
}

// ListResources lists what the caller (or a role it holds) sees.
func (s *Service) ListResources(ctx context.Context, req *sowerv1.ListResourcesRequest) (*sowerv1.ListResourcesResponse, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkAccount(req.GetAccount()); err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 || req.GetOffset() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit and offset must not be negative")
	}
	g := s.c.Store.Graph()
	viewer := caller
	if r := req.GetRole(); r != "" {
		if viewer, err = s.roleRef(r); err != nil {
			return nil, err
		}
		if !holds(g, caller, viewer) {
			return nil, status.Errorf(codes.PermissionDenied, "you may list resources only as a role you hold; you do not hold %s", r)
		}
	}
	q := policy.ResourceQuery{Account: s.c.Account, Kind: req.GetKind(), Search: req.GetSearch(), Viewer: viewer}
	if !req.GetCountOnly() {
		q.Offset, q.Limit = int(req.GetOffset()), int(req.GetLimit())
	} else {
		q.Limit = 1
	}
	page, count := g.Resources(q)
	resp := &sowerv1.ListResourcesResponse{Count: int64(count)}
	if !req.GetCountOnly() {
		resp.Resources = make([]*sowerv1.ResourceInfo, len(page))
		for i, r := range page {
			resp.Resources[i] = resourceToProto(r)
		}
		if err := s.listedFields(ctx, g, resp.Resources); err != nil {
			return nil, s.toStatus(ctx, "list resources", err)
		}
	}
	return resp, nil
}

// listedFields adds to a listing what Conjur's listing shows beyond the
// resource itself: each variable's secret versions, each host factory's
// layers and tokens.
func (s *Service) listedFields(ctx context.Context, g *policy.Graph, rs []*sowerv1.ResourceInfo) error {
	var variables []string
	for _, r := range rs {
		id, err := policy.ParseID(r.GetId())
		if err != nil {
			return err
		}
		switch id.Kind {
		case policy.KindVariable:
			variables = append(variables, r.GetId())
		case policy.KindHostFactory:
			if err := s.hostFactoryFields(ctx, g, id, r, true); err != nil {
				return err
			}
		}
	}
	if len(variables) == 0 || s.c.Secrets == nil {
		return nil
	}
	var versions map[string][]int64
	if b, ok := s.c.Secrets.(BatchSecretVersions); ok {
		var err error
		if versions, err = b.VersionsOf(ctx, variables); err != nil {
			return err
		}
	} else {
		versions = make(map[string][]int64, len(variables))
		for _, v := range variables {
			vs, err := s.c.Secrets.Versions(ctx, v)
			if err != nil {
				return err
			}
			versions[v] = vs
		}
	}
	for _, r := range rs {
		if vs, ok := versions[r.GetId()]; ok {
			r.SecretVersions = vs
		}
	}
	return nil
}

// GetResource shows one resource.
func (s *Service) GetResource(ctx context.Context, req *sowerv1.GetResourceRequest) (*sowerv1.GetResourceResponse, error) {
	_, id, g, err := s.visibleResource(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	info, ok := g.Resource(id)
	if !ok {
		return nil, notFound(id)
	}
	r := resourceToProto(info)
	if id.Kind == policy.KindPolicy {
		vs, err := s.c.Store.Versions(ctx, id.String())
		if err != nil {
			return nil, s.toStatus(ctx, "read policy versions", err)
		}
		r.PolicyVersions = versionsToProto(vs)
	}
	if id.Kind == policy.KindVariable && s.c.Secrets != nil {
		vs, err := s.c.Secrets.Versions(ctx, id.String())
		if err != nil {
			return nil, s.toStatus(ctx, "read secret versions", err)
		}
		r.SecretVersions = vs
	}
	if id.Kind == policy.KindHostFactory {
		if err := s.hostFactoryFields(ctx, g, id, r, true); err != nil {
			return nil, s.toStatus(ctx, "read host factory tokens", err)
		}
	}
	return &sowerv1.GetResourceResponse{Resource: r}, nil
}

// GetPolicy returns a policy and its versions.
func (s *Service) GetPolicy(ctx context.Context, req *sowerv1.GetPolicyRequest) (*sowerv1.GetPolicyResponse, error) {
	_, id, g, err := s.visibleResource(ctx, req.GetAccount(), policy.KindPolicy, req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	info, ok := g.Resource(id)
	if !ok {
		return nil, notFound(id)
	}
	vs, err := s.c.Store.Versions(ctx, id.String())
	if err != nil {
		return nil, s.toStatus(ctx, "read policy versions", err)
	}
	if v := req.GetVersion(); v != 0 {
		vs = slices.DeleteFunc(vs, func(pv etcdstore.PolicyVersion) bool { return pv.Version != v })
		if len(vs) == 0 {
			return nil, status.Errorf(codes.NotFound, "%s has no version %d (kept: the latest 20)", id, v)
		}
	}
	return &sowerv1.GetPolicyResponse{Resource: resourceToProto(info), Versions: versionsToProto(vs)}, nil
}

// ListPermittedRoles lists the roles allowed a privilege on a resource.
func (s *Service) ListPermittedRoles(ctx context.Context, req *sowerv1.ListPermittedRolesRequest) (*sowerv1.ListPermittedRolesResponse, error) {
	_, id, g, err := s.visibleResource(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	if req.GetPrivilege() == "" {
		return nil, status.Error(codes.InvalidArgument, "privilege is required, for example execute")
	}
	return &sowerv1.ListPermittedRolesResponse{RoleIds: idStrings(g.PermittedRoles(req.GetPrivilege(), id))}, nil
}

// visibleRole returns the role's id if it exists and the caller may see it.
func (s *Service) visibleRole(ctx context.Context, account, kind, identifier string) (policy.ID, *policy.Graph, error) {
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return policy.ID{}, nil, err
	}
	if err := s.checkAccount(account); err != nil {
		return policy.ID{}, nil, err
	}
	id, err := s.ref(kind, identifier)
	if err != nil {
		return policy.ID{}, nil, err
	}
	g := s.c.Store.Graph()
	if _, ok := g.Role(id); !ok || !maySee(g, caller, id) {
		return policy.ID{}, nil, notFound(id)
	}
	return id, g, nil
}

// GetRole shows a role with its direct members.
func (s *Service) GetRole(ctx context.Context, req *sowerv1.GetRoleRequest) (*sowerv1.GetRoleResponse, error) {
	id, g, err := s.visibleRole(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	info, ok := g.Role(id)
	if !ok {
		return nil, notFound(id)
	}
	return &sowerv1.GetRoleResponse{
		Id: info.ID.String(), Policy: idString(info.PolicyID), Members: membershipsToProto(info.Members), RestrictedTo: info.RestrictedTo,
	}, nil
}

// ListRoleMembers lists a role's direct members.
func (s *Service) ListRoleMembers(ctx context.Context, req *sowerv1.ListRoleMembersRequest) (*sowerv1.ListRoleMembersResponse, error) {
	id, g, err := s.visibleRole(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	ms := g.Members(id)
	if q := strings.ToLower(req.GetSearch()); q != "" {
		ms = slices.DeleteFunc(ms, func(m policy.Membership) bool { return !strings.Contains(strings.ToLower(m.Member.String()), q) })
	}
	count := len(ms)
	ms = page(ms, int(req.GetOffset()), int(req.GetLimit()))
	return &sowerv1.ListRoleMembersResponse{Members: membershipsToProto(ms), Count: int64(count)}, nil
}

// ListRoleMemberships lists the roles a role belongs to.
func (s *Service) ListRoleMemberships(ctx context.Context, req *sowerv1.ListRoleMembershipsRequest) (*sowerv1.ListRoleMembershipsResponse, error) {
	id, g, err := s.visibleRole(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	var filter map[policy.ID]bool
	if len(req.GetFilter()) > 0 {
		filter = map[policy.ID]bool{}
		for _, f := range req.GetFilter() {
			fid, err := s.roleRef(f)
			if err != nil {
				return nil, err
			}
			filter[fid] = true
		}
	}
	if req.GetAll() {
		roles := g.AllRoles(id)
		if filter != nil {
			roles = slices.DeleteFunc(roles, func(r policy.ID) bool { return !filter[r] })
		}
		return &sowerv1.ListRoleMembershipsResponse{RoleIds: idStrings(roles)}, nil
	}
	ms := g.Memberships(id)
	q := strings.ToLower(req.GetSearch())
	ms = slices.DeleteFunc(ms, func(m policy.Membership) bool {
		return (filter != nil && !filter[m.Role]) || (q != "" && !strings.Contains(strings.ToLower(m.Role.String()), q))
	})
	return &sowerv1.ListRoleMembershipsResponse{Memberships: membershipsToProto(ms)}, nil
}

// page applies offset and limit (0: no limit).
func page[T any](s []T, offset, limit int) []T {
	if offset > 0 {
		s = s[min(offset, len(s)):]
	}
	if limit > 0 && len(s) > limit {
		s = s[:limit]
	}
	return s
}

// GetRoleGraph answers Conjur's ?graph: the edges around a role the caller
// sees.
func (s *Service) GetRoleGraph(ctx context.Context, req *sowerv1.GetRoleGraphRequest) (*sowerv1.GetRoleGraphResponse, error) {
	id, g, err := s.visibleRole(ctx, req.GetAccount(), req.GetKind(), req.GetIdentifier())
	if err != nil {
		return nil, err
	}
	caller, err := rpcctx.CallerRole(ctx)
	if err != nil {
		return nil, err
	}
	edges := g.RoleGraph(id, caller)
	out := &sowerv1.GetRoleGraphResponse{Edges: make([]*sowerv1.RoleGraphEdge, 0, len(edges))}
	for _, e := range edges {
		out.Edges = append(out.Edges, &sowerv1.RoleGraphEdge{Parent: e.Parent.String(), Child: e.Child.String()})
	}
	return out, nil
}
