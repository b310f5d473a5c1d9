package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnrollPrefix holds the Standby enrollment tokens the seed service issues,
// one key per token: /sower/enroll/<hex SHA-256 of the token>.
const EnrollPrefix = "/sower/enroll/"

// EnrollKey is the etcd key of an enrollment token.
func EnrollKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return EnrollPrefix + hex.EncodeToString(sum[:])
}

// Enrollment is the record behind a Standby's single-use enrollment token,
// as the seed service writes it.
type Enrollment struct {
	SeedID    string    `json:"seed_id"`
	Host      string    `json:"host"` // "<account>:host:conjur/cluster/<cluster>/<node>"
	NodeName  string    `json:"node_name"`
	ExpiresAt time.Time `json:"expires_at"`
	// Serials are the seed's certificates (hex): enrollment makes them
	// the only ones the node may reach etcd with (CertsPrefix).
	Serials []string `json:"serials,omitempty"`
}

// Policy is what the cluster asks the permission graph. Ids are
// "account:kind:identifier". seed.GraphPolicy implements it.
type Policy interface {
	// IsMember reports whether member belongs to role, directly or not.
	IsMember(role, member string) bool
	// Annotation returns a resource's annotation value.
	Annotation(resource, name string) (string, bool)
}

// ClusterLayer is the layer whose members may join cluster name.
func ClusterLayer(account, name string) string {
	return account + ":layer:conjur/cluster/" + name
}

// ClusterPolicyID is the policy that declares cluster name.
func ClusterPolicyID(account, name string) string {
	return account + ":policy:conjur/cluster/" + name
}

// FailoverTTL reads the cluster policy's ttl annotation (whole seconds, as
// in Conjur). It returns fallback when there is no policy or annotation,
// and never less than MinFailoverTTL.
func FailoverTTL(p Policy, account, name string, fallback time.Duration) time.Duration {
	ttl := fallback
	if p != nil {
		if v, ok := p.Annotation(ClusterPolicyID(account, name), "ttl"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				ttl = time.Duration(n) * time.Second
			}
		}
	}
	if ttl <= 0 {
		ttl = DefaultFailoverTTL
	}
	return max(ttl, MinFailoverTTL)
}

// EnrollerConfig is what the Leader's Enroller needs.
type EnrollerConfig struct {
	// Client talks to the Leader's own etcd member (in-process).
	Client   *clientv3.Client
	Election *Election
	// Policy checks that the host belongs to the cluster's layer. Nil
	// skips the check (the seed service checked it when it issued the
	// token); a warning is logged on every enrollment.
	Policy  Policy
	Account string
	Cluster string
	// Now is the clock tokens expire by. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Enroller admits Standbys: it checks an enrollment token, adds the node
// to etcd as a learner, and consumes the token, all or nothing.
type Enroller struct {
	c  EnrollerConfig
	lg *slog.Logger
	mu sync.Mutex // one enrollment at a time
}

// NewEnroller checks the configuration.
func NewEnroller(c EnrollerConfig) (*Enroller, error) {
	switch {
	case c.Client == nil:
		return nil, errors.New("cluster: Enroller needs the local etcd client")
	case c.Election == nil:
		return nil, errors.New("cluster: Enroller needs the Election")
	case c.Account == "" || c.Cluster == "":
		return nil, errors.New("cluster: Enroller needs the account and cluster name")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	lg := c.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Enroller{c: c, lg: lg}, nil
}

// EnrollRequest is a joining node's request.
type EnrollRequest struct {
	Token string
	// Name is the node's name, which becomes its etcd member name.
	Name string
	// PeerURL is the URL its etcd peer listener advertises.
	PeerURL string
	// Cert is the client certificate the node presented, already
	// verified against the cluster CA: the node certificate of its seed.
	Cert *x509.Certificate
}

// EnrollResult is what the node needs to start its etcd member.
type EnrollResult struct {
	MemberID uint64
	// InitialCluster is etcd's --initial-cluster for the existing
	// cluster, the new member included.
	InitialCluster string
}

// Enroll admits a Standby as an etcd learner. The Leader promotes it once
// it has caught up (Members.Run). On any refusal or failure the membership
// and the token are left as they were.
func (en *Enroller) Enroll(ctx context.Context, req EnrollRequest) (EnrollResult, error) {
	if err := en.c.Election.Check(); err != nil {
		return EnrollResult{}, err
	}
	if err := checkCert(req); err != nil {
		return EnrollResult{}, err
	}
	key := EnrollKey(req.Token)
	resp, err := en.c.Client.Get(ctx, key)
	if err != nil {
		return EnrollResult{}, fmt.Errorf("cluster: read enrollment token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return EnrollResult{}, fmt.Errorf("%w: unknown, already used or revoked; ask for a new Standby seed", ErrTokenInvalid)
	}
	var rec Enrollment
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return EnrollResult{}, fmt.Errorf("%w: its record is unreadable; ask for a new Standby seed", ErrTokenInvalid)
	}
	seen := resp.Kvs[0].ModRevision
	if rec.NodeName != req.Name {
		return EnrollResult{}, fmt.Errorf("%w: it was issued for node %q, not %q", ErrTokenInvalid, rec.NodeName, req.Name)
	}
	if !en.c.Now().Before(rec.ExpiresAt) {
		return EnrollResult{}, fmt.Errorf("%w: it expired at %s; ask for a new Standby seed", ErrTokenExpired, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if err := en.checkPolicy(rec.Host); err != nil {
		return EnrollResult{}, err
	}

	// One join at a time: a joining member starts etcd with the
	// membership it was given, and etcd refuses to start when that is no
	// longer the cluster's (another learner added in between).
	en.mu.Lock()
	defer en.mu.Unlock()
	list, err := en.c.Client.MemberList(ctx)
	if err != nil {
		return EnrollResult{}, fmt.Errorf("cluster: list members: %w", err)
	}
	for _, m := range list.Members {
		if m.IsLearner && m.Name == "" {
			return EnrollResult{}, fmt.Errorf("%w: member %x was added and has not started yet; retry in a few seconds", ErrJoinInProgress, m.ID)
		}
	}
	for _, m := range list.Members {
		if m.Name == req.Name {
			return EnrollResult{}, fmt.Errorf("%w: %q (id %x); to re-enroll it, remove it first with `sower cluster remove %s`", ErrMemberExists, req.Name, m.ID, req.Name)
		}
		if slices.Contains(m.PeerURLs, req.PeerURL) {
			return EnrollResult{}, fmt.Errorf("%w: member %q (id %x) already uses peer URL %s; remove it first with `sower cluster remove %s`", ErrMemberExists, m.Name, m.ID, req.PeerURL, displayName(memberOf(m)))
		}
	}

	added, err := en.addLearner(ctx, req.PeerURL)
	if err != nil {
		return EnrollResult{}, fmt.Errorf("cluster: add %s as a learner: %w", req.Name, err)
	}
	id := added.Member.ID
	jr, _ := json.Marshal(joinRecord{Name: req.Name, Host: rec.Host, SeedID: rec.SeedID, AddedAt: en.c.Now().UTC()})
	txn, err := en.c.Election.Txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", seen)},
		[]clientv3.Op{clientv3.OpDelete(key), clientv3.OpPut(joinKey(id), string(jr)), certRecordOp(req.Name, enrolledSerials(rec, req))}, nil)
	if err != nil || !txn.Succeeded {
		// Undo the learner: a refused or failed enrollment leaves the
		// membership as it was.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, rerr := en.c.Client.MemberRemove(rctx, id); rerr != nil {
			en.lg.Error("remove the learner of a failed enrollment; the Leader removes it after the join timeout", "name", req.Name, "err", rerr)
		}
		cancel()
		if err == nil {
			err = fmt.Errorf("%w: it was used by a concurrent enrollment", ErrTokenInvalid)
		}
		return EnrollResult{}, err
	}
	en.lg.Info("enrolled a Standby as a learner", "name", req.Name, "id", strconv.FormatUint(id, 16), "host", rec.Host, "seed_id", rec.SeedID, "peer_url", req.PeerURL)
	return EnrollResult{MemberID: id, InitialCluster: initialCluster(added.Members, id, req.Name)}, nil
}

// enrolledSerials are the certificates a node enrolling by rec may reach
// etcd with: its seed's, and the one it enrolled with (the seed's node
// certificate; the only one known of a token issued before seeds recorded
// their serials). Whatever a former member of the same name held is no
// longer among them.
func enrolledSerials(rec Enrollment, req EnrollRequest) []string {
	out := slices.Clone(rec.Serials)
	if s := req.Cert.SerialNumber.Text(16); !slices.Contains(out, s) {
		out = append(out, s)
	}
	return out
}

// addLearner adds a learner (see retryUnhealthy).
func (en *Enroller) addLearner(ctx context.Context, peerURL string) (*clientv3.MemberAddResponse, error) {
	var added *clientv3.MemberAddResponse
	err := retryUnhealthy(ctx, func() (err error) {
		added, err = en.c.Client.MemberAddAsLearner(ctx, []string{peerURL})
		return err
	})
	return added, err
}

func memberOf(m *memberPB) Member { return Member{ID: m.ID, Name: m.Name} }

// initialCluster writes etcd's --initial-cluster for a member joining an
// existing cluster: every member's name and peer URLs, the new one under
// its own name. A member that has not started yet (another join under way)
// has no name; etcd matches members by peer URL, but the names must be
// unique, so it gets a placeholder.
func initialCluster(ms []*memberPB, id uint64, name string) string {
	var parts []string
	for _, m := range ms {
		n := m.Name
		switch {
		case m.ID == id:
			n = name
		case n == "":
			n = "unstarted-" + strconv.FormatUint(m.ID, 16)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// checkCert ties the request to the certificate of the node's seed: the
// certificate names the node and covers the host of its peer URL.
func checkCert(req EnrollRequest) error {
	if req.Cert == nil {
		return fmt.Errorf("%w: enrollment needs the node certificate of the Standby seed as TLS client certificate", ErrCertMismatch)
	}
	if req.Cert.Subject.CommonName != req.Name {
		return fmt.Errorf("%w: it names %q, the request %q", ErrCertMismatch, req.Cert.Subject.CommonName, req.Name)
	}
	u, err := url.Parse(req.PeerURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Port() == "" || u.Path != "" {
		return fmt.Errorf("%w: %q must be https://host:port", ErrBadPeerURL, req.PeerURL)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		if slices.ContainsFunc(req.Cert.IPAddresses, ip.Equal) {
			return nil
		}
	} else if slices.Contains(req.Cert.DNSNames, host) {
		return nil
	}
	return fmt.Errorf("%w: %s is not among its names (DNS %v, IP %v); request the seed with this host name", ErrBadPeerURL, host, req.Cert.DNSNames, req.Cert.IPAddresses)
}

func (en *Enroller) checkPolicy(host string) error {
	layer := ClusterLayer(en.c.Account, en.c.Cluster)
	if en.c.Policy == nil {
		en.lg.Warn("no policy store wired: not checking that the enrolling host is in the cluster layer", "host", host, "layer", layer)
		return nil
	}
	if !strings.HasPrefix(host, en.c.Account+":host:") || !en.c.Policy.IsMember(layer, host) {
		return fmt.Errorf("%w: %s is not a member of %s; grant it the layer in policy conjur/cluster/%s", ErrNotClusterMember, host, layer, en.c.Cluster)
	}
	return nil
}

// Abandon removes the learner a node was enrolled as, when that node
// reports it could not start. Only a learner that has never started, and
// whose join record names the node, is removed.
func (en *Enroller) Abandon(ctx context.Context, name string, cert *x509.Certificate) error {
	if err := en.c.Election.Check(); err != nil {
		return err
	}
	if cert == nil || cert.Subject.CommonName != name {
		return fmt.Errorf("%w: only the node itself may abandon its join", ErrCertMismatch)
	}
	resp, err := en.c.Client.Get(ctx, JoinsPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	list, err := en.c.Client.MemberList(ctx)
	if err != nil {
		return err
	}
	for _, kv := range resp.Kvs {
		var rec joinRecord
		if json.Unmarshal(kv.Value, &rec) != nil || rec.Name != name {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), JoinsPrefix), 16, 64)
		if err != nil {
			continue
		}
		i := slices.IndexFunc(list.Members, func(m *memberPB) bool { return m.ID == id })
		if i >= 0 && (!list.Members[i].IsLearner || list.Members[i].Name != "") {
			return fmt.Errorf("%w: %s has started; remove it with `sower cluster remove`", ErrMemberExists, name)
		}
		if i >= 0 {
			if _, err := en.c.Client.MemberRemove(ctx, id); err != nil {
				return fmt.Errorf("cluster: remove abandoned learner %s: %w", name, err)
			}
		}
		if _, err := en.c.Election.Txn(ctx, nil, []clientv3.Op{clientv3.OpDelete(string(kv.Key))}, nil); err != nil {
			return err
		}
		en.lg.Warn("removed the learner of an abandoned join", "name", name, "id", strconv.FormatUint(id, 16))
		return nil
	}
	return fmt.Errorf("%w: no pending join for %s", ErrMemberNotFound, name)
}
