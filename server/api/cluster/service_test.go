package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/cluster"
)

func TestNotLeaderStatus(t *testing.T) {
	leader := cluster.Leader{Name: "standby-1", URL: "https://10.0.0.12:8443", GRPCAddr: "10.0.0.12:7443"}
	tests := map[string]struct {
		err      error
		code     codes.Code // OK: not a not-leader error
		metadata map[string]string
	}{
		"leader known": {fmt.Errorf("load policy: %w", &cluster.NotLeaderError{Leader: leader, Known: true}), codes.FailedPrecondition,
			map[string]string{"leader_name": "standby-1", "leader_url": "https://10.0.0.12:8443", "leader_grpc_addr": "10.0.0.12:7443"}},
		"no leader":   {&cluster.NotLeaderError{}, codes.Unavailable, map[string]string{}},
		"other error": {errors.New("boom"), codes.OK, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := NotLeaderStatus(tc.err)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("NotLeaderStatus = %v, want nil", err)
				}
				return
			}
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code = %s, want %s", st.Code(), tc.code)
			}
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				info, _ = d.(*errdetails.ErrorInfo)
			}
			if info == nil || info.GetReason() != "NOT_LEADER" || fmt.Sprint(info.GetMetadata()) != fmt.Sprint(tc.metadata) {
				t.Fatalf("details = %v, want NOT_LEADER with %v", st.Details(), tc.metadata)
			}
		})
	}
}

func TestToStatus(t *testing.T) {
	s := &Service{c: Config{Logger: slog.New(slog.DiscardHandler)}}
	tests := map[string]struct {
		err  error
		code codes.Code
	}{
		"token invalid":       {cluster.ErrTokenInvalid, codes.PermissionDenied},
		"token expired":       {cluster.ErrTokenExpired, codes.PermissionDenied},
		"not in the layer":    {cluster.ErrNotClusterMember, codes.PermissionDenied},
		"wrong certificate":   {cluster.ErrCertMismatch, codes.PermissionDenied},
		"no such member":      {cluster.ErrMemberNotFound, codes.NotFound},
		"name taken":          {cluster.ErrMemberExists, codes.AlreadyExists},
		"bad peer URL":        {cluster.ErrBadPeerURL, codes.InvalidArgument},
		"quorum":              {cluster.ErrWouldLoseQuorum, codes.FailedPrecondition},
		"removing the Leader": {cluster.ErrIsLeader, codes.FailedPrecondition},
		"learner not ready":   {cluster.ErrLearnerNotReady, codes.FailedPrecondition},
		"join in progress":    {cluster.ErrJoinInProgress, codes.Unavailable},
		"unhealthy":           {cluster.ErrUnhealthy, codes.Unavailable},
		"cancelled":           {context.Canceled, codes.Canceled},
		"unknown":             {errors.New("disk on fire"), codes.Internal},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := status.Code(s.toStatus("test", fmt.Errorf("wrapped: %w", tc.err))); got != tc.code {
				t.Fatalf("code = %s, want %s", got, tc.code)
			}
		})
	}
}

// allowNone refuses everything, as a policy without the grant does.
type allowNone struct{}

func (allowNone) Allowed(context.Context, string, string, string) (bool, error) { return false, nil }

func TestAuthorize(t *testing.T) {
	admin := authn.Identity{Account: "acme", Kind: "user", ID: "admin"}
	alice := authn.Identity{Account: "acme", Kind: "user", ID: "alice"}
	tests := map[string]struct {
		authz Authorizer
		id    *authn.Identity
		code  codes.Code
	}{
		"anonymous":                     {nil, nil, codes.Unauthenticated},
		"no policy: a user":             {nil, &alice, codes.PermissionDenied},
		"no policy: the admin":          {nil, &admin, codes.Unavailable}, // allowed; then no Leader
		"policy refuses even the admin": {allowNone{}, &admin, codes.PermissionDenied},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &Service{c: Config{Account: "acme", Authorizer: tc.authz, Election: standby(t), Logger: slog.New(slog.DiscardHandler)}}
			ctx := context.Background()
			if tc.id != nil {
				ctx = authn.NewContext(ctx, *tc.id)
			}
			_, err := s.authorize(ctx)
			if status.Code(err) != tc.code {
				t.Fatalf("authorize: %v, want %s", err, tc.code)
			}
		})
	}
}

// standby is an election that has not observed any Leader: Check refuses.
func standby(t *testing.T) *cluster.Election {
	t.Helper()
	el, err := cluster.NewElection(cluster.ElectionConfig{Client: clientv3.NewCtxClient(context.Background()), Self: cluster.Leader{Name: "n1", MemberID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return el
}
