package server

import (
	"context"
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/server/conjur"
)

// diskGuard refuses the write RPCs (leaderOnlyMethods) while the data dir's
// file system is below its free-space floor or a member holds etcd's
// NOSPACE alarm (cluster.Disk), before they run: a write refused early
// leaves nothing half done, where one refused by etcd midway (a policy
// load's later batches) has to be rolled back. Reads and authentication
// are not writes and go on.
type diskGuard struct{ d *cluster.Disk }

const removeMemberMethod = "/sower.v1.ClusterService/RemoveMember"

func (g diskGuard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !leaderOnlyMethods[info.FullMethod] {
		return h(ctx, req)
	}
	size := 0
	if m, ok := req.(proto.Message); ok {
		size = proto.Size(m)
	}
	check := g.d.Check
	if info.FullMethod == removeMemberMethod {
		// Removing a member writes nothing but deletes, which etcd
		// takes under the alarm; a member whose disk is full must be
		// removable.
		check = g.d.CheckLocal
	}
	if err := check(size); err != nil {
		return nil, noSpaceStatus(err)
	}
	resp, err := h(ctx, req)
	if err != nil {
		// The disk may have crossed the floor while the write ran, and
		// etcd refused it under the alarm: answer what happened, not
		// the generic internal error the service made of it.
		if nerr := check(0); nerr != nil {
			return nil, noSpaceStatus(nerr)
		}
	}
	return resp, err
}

// registerDiskMetrics exports the guard's view: free bytes, the floor, and
// whether writes are refused now.
func registerDiskMetrics(m *metrics, d *cluster.Disk) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_disk_free_bytes", Help: "Free bytes on the data dir's file system, as last read."},
			func() float64 { return float64(d.Usage().Free) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_disk_min_free_bytes", Help: "The free-space floor (--min-free-disk) below which writes are refused."},
			func() float64 { return float64(d.Floor()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sower_disk_writes_refused", Help: "1 while writes are refused for lack of disk space (this node's or a member's NOSPACE alarm)."},
			func() float64 {
				if d.Refusing() {
					return 1
				}
				return 0
			}),
	)
}

// noSpaceStatus is the one place a *cluster.NoSpaceError becomes a gRPC
// status: ResourceExhausted with an ErrorInfo (reason
// conjur.InsufficientStorage) carrying the bytes free and required, which
// the REST gateway and the Conjur paths answer as 507 Insufficient Storage.
func noSpaceStatus(err error) error {
	st := status.New(codes.ResourceExhausted, err.Error())
	md := map[string]string{"flag": "--min-free-disk"}
	var nse *cluster.NoSpaceError
	if errors.As(err, &nse) {
		if nse.Required > 0 {
			md["free_bytes"] = strconv.FormatUint(nse.Free, 10)
			md["required_free_bytes"] = strconv.FormatUint(nse.Required, 10)
		}
		if nse.Member != "" {
			md["member"] = nse.Member
		}
	}
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: conjur.InsufficientStorage, Domain: "sower", Metadata: md}); derr == nil {
		st = d
	}
	return st.Err()
}
