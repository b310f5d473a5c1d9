package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"filippo.io/age"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sowerproject/sower/pki"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/seed/archive"
)

// Join makes a node with no etcd data join an existing cluster as a
// Standby, from a Standby seed, instead of bootstrapping a new cluster.
type Join struct {
	// Seed is the sealed Standby seed.
	Seed []byte
	// Identity opens the seed (the age key the seed was sealed to).
	Identity age.Identity
	// Pin is the cluster CA's pin; the seed's signature must chain to it.
	Pin pki.Pin
	// Reenroll lets a node whose data dir holds etcd data (a former
	// Leader, a removed Standby) discard that data and enroll again. The
	// CLI asks for confirmation before setting it.
	Reenroll bool
}

// ErrJoin wraps every failure to join a cluster from a seed.
var ErrJoin = errors.New("server: join the cluster")

// The files a Standby seed carries (paths inside the seed).
const (
	seedTokenFile   = "enrollment-token"
	seedDataKeyFile = "data.key"
)

// seedTLSFiles are the seed's files that become the node's TLS identity,
// under <data-dir>/tls/ with the same names.
var seedTLSFiles = []struct {
	name string
	mode os.FileMode
}{
	{caFile, 0o644}, {nodeCertFile, 0o644}, {nodeKeyFile, 0o600}, {peerCertFile, 0o644}, {peerKeyFile, 0o600},
}

// joinStart is how a joining node starts its etcd member.
type joinStart struct {
	cluster        string // the cluster's name, from the seed
	initialCluster string
	// abandon asks the Leader to remove the learner again; called when
	// the member does not start.
	abandon func()
}

// joinFromSeed enrolls this node with the cluster's Leader and installs the
// seed's data key and certificates into the data dir. The order keeps a
// failure harmless: the seed is verified and the enrollment made before the
// data dir is touched; old etcd data (re-enrollment) is discarded only once
// the Leader has admitted the node.
func (s *Server) joinFromSeed(ctx context.Context, dd *dataDir, hasEtcd bool) (*joinStart, error) {
	j := s.c.Join
	sd, err := archive.Open(bytes.NewReader(j.Seed), j.Pin, j.Identity)
	if err != nil {
		return nil, fmt.Errorf("%w: open the seed: %w", ErrJoin, err)
	}
	m := sd.Manifest()
	switch {
	case m.Kind != archive.KindStandby:
		return nil, fmt.Errorf("%w: the seed is a %s seed; a node joins the quorum with a Standby seed (sower seed standby)", ErrJoin, m.Kind)
	case m.Account != s.c.Account:
		return nil, fmt.Errorf("%w: the seed is for account %q, this node is configured for %q; start it with --account %s", ErrJoin, m.Account, s.c.Account, m.Account)
	case m.Node.Name != s.c.Name:
		return nil, fmt.Errorf("%w: the seed is for node %q, this node is named %q; start it with --name %s", ErrJoin, m.Node.Name, s.c.Name, m.Node.Name)
	case s.c.Cluster != "" && m.Cluster != s.c.Cluster:
		return nil, fmt.Errorf("%w: the seed is for cluster %q, this node is configured for %q", ErrJoin, m.Cluster, s.c.Cluster)
	}
	files := map[string][]byte{}
	for _, name := range []string{seedTokenFile, seedDataKeyFile, "tls/" + caFile, "tls/" + nodeCertFile, "tls/" + nodeKeyFile, "tls/" + peerCertFile, "tls/" + peerKeyFile} {
		data, ok := sd.ReadFile(name)
		if !ok {
			return nil, fmt.Errorf("%w: the seed has no %s; it is not a Standby seed of this sower version", ErrJoin, name)
		}
		files[name] = data
	}
	kr, err := pki.ParseKeyring(files[seedDataKeyFile])
	if err != nil {
		return nil, fmt.Errorf("%w: the seed's data key: %w", ErrJoin, err)
	}
	roots, err := pki.ParseCertificatesPEM(files["tls/"+caFile])
	if err != nil {
		return nil, fmt.Errorf("%w: the seed's CA bundle: %w", ErrJoin, err)
	}
	nodeCert, err := pki.ParseIssued(files["tls/"+nodeCertFile], files["tls/"+nodeKeyFile])
	if err != nil {
		return nil, fmt.Errorf("%w: the seed's node certificate: %w", ErrJoin, err)
	}
	if hasEtcd && !j.Reenroll {
		return nil, fmt.Errorf("%w: %s already holds etcd data (this node was a member before); start it without --seed to rejoin with that data, or re-enroll with --reenroll, which deletes it", ErrJoin, dd.join("etcd"))
	}

	ej := &enrollClient{
		roots: roots, cert: nodeCert, name: s.c.Name,
		endpoints: append(append([]string(nil), m.Endpoints.Leader...), m.Endpoints.Standbys...),
		lg:        s.lg,
	}
	peerURL := "https://" + s.c.EtcdPeerAddr
	token := strings.TrimSpace(string(files[seedTokenFile]))
	res, err := ej.enroll(ctx, token, peerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	if res.GetCluster() != m.Cluster {
		ej.abandon()
		return nil, fmt.Errorf("%w: the Leader serves cluster %q, the seed names %q", ErrJoin, res.GetCluster(), m.Cluster)
	}
	s.lg.Info("enrolled with the Leader as a learner", "member_id", res.GetMemberId(), "cluster", m.Cluster, "seed_id", m.SeedID)

	install := func() error {
		if hasEtcd {
			s.lg.Warn("re-enrolling: deleting the old etcd data", "dir", dd.join("etcd"))
			if err := os.RemoveAll(dd.join("etcd")); err != nil {
				return fmt.Errorf("delete the old etcd data: %w", err)
			}
		}
		if err := os.MkdirAll(dd.join(tlsDir), 0o700); err != nil {
			return err
		}
		for _, f := range seedTLSFiles {
			if err := writeFileAtomic(dd.join(tlsDir, f.name), files["tls/"+f.name], f.mode); err != nil {
				return fmt.Errorf("write %s: %w", f.name, err)
			}
		}
		return kr.WriteFile(dd.join("data.key"))
	}
	if err := install(); err != nil {
		ej.abandon()
		return nil, fmt.Errorf("%w: install the seed into %s: %w", ErrJoin, dd.path, err)
	}
	return &joinStart{cluster: m.Cluster, initialCluster: res.GetInitialCluster(), abandon: ej.abandon}, nil
}

// enrollClient is a joining node's client of the Leader: it finds the
// Leader through any endpoint of the seed (REST, GET /v1/cluster/leader)
// and enrolls over gRPC with the seed's node certificate.
type enrollClient struct {
	roots      []*x509.Certificate
	cert       *pki.Issued
	name       string
	endpoints  []string
	lg         *slog.Logger
	leaderAddr string // gRPC address of the Leader that admitted this node
}

// enrollPatience bounds how long a node keeps trying to enroll through
// retryable refusals: the Leader moving (a failover), no Leader yet, or
// another Standby's join under way (one join at a time; a learner may take
// a while to receive the Leader's data).
const enrollPatience = 5 * time.Minute

func (c *enrollClient) enroll(ctx context.Context, token, peerURL string) (*sowerv1.EnrollResponse, error) {
	var last error
	deadline := time.Now().Add(enrollPatience)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("no Leader admitted this node within %s: %w", enrollPatience, last)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 3*time.Second)):
			}
		}
		leader, err := c.findLeader(ctx)
		if err != nil {
			last = err
			continue
		}
		var resp *sowerv1.EnrollResponse
		err = c.call(ctx, leader.GetGrpcAddr(), func(ctx context.Context, cli sowerv1.ClusterServiceClient) (err error) {
			resp, err = cli.Enroll(ctx, &sowerv1.EnrollRequest{Token: token, Name: c.name, PeerUrl: peerURL})
			return err
		})
		if err == nil {
			c.leaderAddr = leader.GetGrpcAddr()
			return resp, nil
		}
		last = err
		if code := status.Code(err); code == codes.Unavailable || code == codes.DeadlineExceeded || isNotLeader(err) {
			if attempt%10 == 0 {
				c.lg.Info("enrollment: waiting for the Leader", "reason", status.Convert(err).Message())
			}
			continue
		}
		return nil, fmt.Errorf("the Leader refused the enrollment: %s", status.Convert(err).Message())
	}
}

func isNotLeader(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "NOT_LEADER" {
			return true
		}
	}
	return false
}

// abandon asks the Leader to remove the learner this node was added as.
func (c *enrollClient) abandon() {
	if c.leaderAddr == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.call(ctx, c.leaderAddr, func(ctx context.Context, cli sowerv1.ClusterServiceClient) error {
		_, err := cli.AbandonEnrollment(ctx, &sowerv1.AbandonEnrollmentRequest{Name: c.name})
		return err
	})
	if err != nil {
		c.lg.Warn("could not undo the enrollment; the Leader removes the learner after its join timeout", "err", err)
		return
	}
	c.lg.Info("undid the enrollment: the Leader removed this node's learner")
}

// findLeader asks the seed's endpoints, in order, who leads.
func (c *enrollClient) findLeader(ctx context.Context) (*sowerv1.GetLeaderResponse, error) {
	if len(c.endpoints) == 0 {
		return nil, errors.New("the seed names no endpoint of the cluster")
	}
	var errs []error
	for _, ep := range c.endpoints {
		l, err := c.leaderAt(ctx, ep)
		if err == nil && l.GetKnown() {
			return l, nil
		}
		if err == nil {
			err = fmt.Errorf("%s: no Leader is elected right now", ep)
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (c *enrollClient) leaderAt(ctx context.Context, endpoint string) (*sowerv1.GetLeaderResponse, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("endpoint %q is not an https URL", endpoint)
	}
	tc, err := pki.ClientTLS(c.roots, u.Hostname(), nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/v1/cluster/leader", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read from %s: %w", u.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u.Host, resp.Status)
	}
	var l sowerv1.GetLeaderResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("%s: unreadable answer: %w", u.Host, err)
	}
	return &l, nil
}

// call dials addr over mutual TLS with the seed's node certificate and
// runs f with a bounded context.
func (c *enrollClient) call(ctx context.Context, addr string, f func(context.Context, sowerv1.ClusterServiceClient) error) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("the Leader's gRPC address %q: %w", addr, err)
	}
	src, err := pki.StaticCertificate(c.cert)
	if err != nil {
		return err
	}
	tc, err := pki.ClientTLS(c.roots, host, src)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return f(cctx, sowerv1.NewClusterServiceClient(conn))
}
