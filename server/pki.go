package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sowerproject/sower/cluster"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/server/etcdstore"
)

// Files of a node's TLS identity, under <data-dir>/tls/. etcd reads them on
// every handshake, so a renewal only rewrites them.
const (
	tlsDir         = "tls"
	caFile         = "ca.pem"
	nodeCertFile   = "node.pem"
	nodeKeyFile    = "node-key.pem"
	peerCertFile   = "etcd-peer.pem"
	peerKeyFile    = "etcd-peer-key.pem"
	crlFile        = "crl.der"
	importCertFile = "ca-import.pem"
	importKeyFile  = "ca-import-key.pem"
)

// revokedPrefix holds one key per revoked serial (hex), watched by every node.
const revokedPrefix = etcdstore.RevokedPrefix

// nodePKI is a node's trust and certificates: the cluster CA (on nodes that
// can issue), the CA bundle every link verifies against, the node's own
// certificate (API server and client identity toward other nodes and its own
// gateway) and its etcd peer certificate, both renewed automatically.
type nodePKI struct {
	dir     string
	ca      *pki.CA
	roots   []*x509.Certificate
	node    *pki.Renewer
	peer    *pki.Renewer
	revoked *pki.RevokedSet
	// onRevoked run after the revocation set changed: the etcd gate
	// checks its open connections again, the replication feed cuts revoked
	// Followers off.
	onRevoked []func()
	lg        *slog.Logger
	fileMu    sync.Mutex
	// crlNumber numbers the CRLs this node writes.
	crlNumber int64
	// etcd is the node's own etcd client once run started: a renewed
	// certificate is bound to the member there before it is used.
	etcd atomic.Pointer[clientv3.Client]
}

// memStore holds the CA record of a cluster being bootstrapped until etcd,
// which needs the certificates the CA issues, is running.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Get(_ context.Context, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return nil, fmt.Errorf("%s: %w", k, pki.ErrNotFound)
	}
	return v, nil
}

func (s *memStore) Put(_ context.Context, k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = append([]byte(nil), v...)
	return nil
}

// nodeNames are the names the node's certificates carry: its name,
// localhost, loopback, and the hosts of its listen addresses.
func (c Config) nodeNames() (dns []string, ips []net.IP) {
	dns = []string{c.Name, "localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, a := range []string{c.GRPCAddr, c.HTTPAddr, c.EtcdClientAddr, c.EtcdPeerAddr} {
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() && !containsIP(ips, ip) {
				ips = append(ips, ip)
			}
		} else if host != "" && !contains(dns, host) {
			dns = append(dns, host)
		}
	}
	return dns, ips
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// bootstrapPKI creates the cluster CA of a new cluster (or imports the one
// staged by `sower ca import`) and the node's first certificates, and writes
// the files etcd needs. The CA record is held in memory until persistCA
// writes it to etcd.
func bootstrapPKI(ctx context.Context, dd *dataDir, c Config, sealer pki.Sealer, lg *slog.Logger) (*nodePKI, *memStore, error) {
	mem := &memStore{m: map[string][]byte{}}
	cfg := pki.Config{Store: mem, Sealer: sealer, Name: c.Account}
	var ca *pki.CA
	var err error
	certPEM, cerr := os.ReadFile(dd.join(tlsDir, importCertFile))
	keyPEM, kerr := os.ReadFile(dd.join(tlsDir, importKeyFile))
	switch {
	case cerr == nil && kerr == nil:
		ca, err = pki.Import(ctx, cfg, certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("server: import the staged CA from %s: %w", dd.join(tlsDir), err)
		}
		lg.Info("imported the staged cluster CA", "pin", ca.Pin().String())
	case os.IsNotExist(cerr) && os.IsNotExist(kerr):
		ca, err = pki.Bootstrap(ctx, cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("server: create the cluster CA: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("server: %s holds only half of a staged CA import; run `sower ca import` again", dd.join(tlsDir))
	}
	p := &nodePKI{dir: dd.join(tlsDir), ca: ca, roots: ca.Roots(), revoked: pki.NewRevokedSet(), lg: lg}
	if err := p.issueNodeCerts(ctx, c); err != nil {
		return nil, nil, err
	}
	return p, mem, nil
}

// loadNodePKI reads the node's files on a restart. The CA itself is loaded
// from etcd by loadCA once etcd runs.
func loadNodePKI(dd *dataDir, lg *slog.Logger) (*nodePKI, error) {
	dir := dd.join(tlsDir)
	rootsPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("server: CA bundle %s: %w; the data dir is incomplete", filepath.Join(dir, caFile), err)
	}
	roots, err := pki.ParseCertificatesPEM(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("server: CA bundle %s: %w", filepath.Join(dir, caFile), err)
	}
	p := &nodePKI{dir: dir, roots: roots, revoked: pki.NewRevokedSet(), lg: lg}
	p.loadCRL()
	node, err := p.readIssued(nodeCertFile, nodeKeyFile)
	if err != nil {
		return nil, err
	}
	peer, err := p.readIssued(peerCertFile, peerKeyFile)
	if err != nil {
		return nil, err
	}
	if p.node, err = p.renewer(node, pki.ProfileLeaderServer, nodeCertFile, nodeKeyFile); err != nil {
		return nil, err
	}
	if p.peer, err = p.renewer(peer, pki.ProfileEtcdPeer, peerCertFile, peerKeyFile); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *nodePKI) readIssued(certName, keyName string) (*pki.Issued, error) {
	certPEM, err := os.ReadFile(filepath.Join(p.dir, certName))
	if err != nil {
		return nil, fmt.Errorf("server: %w; the data dir is incomplete", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(p.dir, keyName))
	if err != nil {
		return nil, fmt.Errorf("server: %w; the data dir is incomplete", err)
	}
	is, err := pki.ParseIssued(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", filepath.Join(p.dir, certName), err)
	}
	return is, nil
}

// issueNodeCerts issues the node and peer certificates and writes every file.
func (p *nodePKI) issueNodeCerts(ctx context.Context, c Config) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("server: create %s: %w", p.dir, err)
	}
	if err := writeFileAtomic(filepath.Join(p.dir, caFile), pki.EncodeCertificatesPEM(p.roots), 0o644); err != nil {
		return fmt.Errorf("server: write CA bundle: %w", err)
	}
	dns, ips := c.nodeNames()
	req := pki.Request{CommonName: c.Name, DNSNames: dns, IPAddresses: ips}
	node, err := p.ca.Issue(ctx, pki.ProfileLeaderServer, req)
	if err != nil {
		return fmt.Errorf("server: issue the node certificate: %w", err)
	}
	peer, err := p.ca.Issue(ctx, pki.ProfileEtcdPeer, req)
	if err != nil {
		return fmt.Errorf("server: issue the etcd peer certificate: %w", err)
	}
	if err := p.writeIssued(node, nodeCertFile, nodeKeyFile); err != nil {
		return err
	}
	if err := p.writeIssued(peer, peerCertFile, peerKeyFile); err != nil {
		return err
	}
	if err := p.writeCRL(); err != nil {
		return fmt.Errorf("server: write the first CRL: %w", err)
	}
	if p.node, err = p.renewer(node, pki.ProfileLeaderServer, nodeCertFile, nodeKeyFile); err != nil {
		return err
	}
	p.peer, err = p.renewer(peer, pki.ProfileEtcdPeer, peerCertFile, peerKeyFile)
	return err
}

func (p *nodePKI) writeIssued(is *pki.Issued, certName, keyName string) error {
	keyPEM, err := is.KeyPEM()
	if err != nil {
		return err
	}
	p.fileMu.Lock()
	defer p.fileMu.Unlock()
	if err := writeFileAtomic(filepath.Join(p.dir, keyName), keyPEM, 0o600); err != nil {
		return fmt.Errorf("server: write %s: %w", keyName, err)
	}
	if err := writeFileAtomic(filepath.Join(p.dir, certName), is.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("server: write %s: %w", certName, err)
	}
	return nil
}

// renewer keeps a certificate current: the CA re-issues it with the same
// names at two thirds of its life, and the files are rewritten.
func (p *nodePKI) renewer(is *pki.Issued, profile pki.ProfileName, certName, keyName string) (*pki.Renewer, error) {
	return pki.NewRenewer(pki.RenewerConfig{
		Certificate: is,
		Renew: func(ctx context.Context, cur *pki.Issued) (*pki.Issued, error) {
			if p.ca == nil {
				return nil, errors.New("this node does not hold the cluster CA")
			}
			leaf := cur.Leaf()
			next, err := p.ca.Issue(ctx, profile, pki.Request{CommonName: leaf.Subject.CommonName, DNSNames: leaf.DNSNames, IPAddresses: leaf.IPAddresses})
			if err != nil {
				return nil, err
			}
			// The etcd gates admit a member's certificates by serial:
			// record the new one before anything presents it.
			if cli := p.etcd.Load(); cli != nil {
				if err := cluster.BindCerts(ctx, cli, leaf.Subject.CommonName, next.Leaf().SerialNumber.Text(16)); err != nil {
					return nil, err
				}
			}
			return next, nil
		},
		OnRenew: func(next *pki.Issued) {
			if err := p.writeIssued(next, certName, keyName); err != nil {
				p.lg.Error("write renewed certificate", "profile", profile, "err", err)
				return
			}
			p.lg.Info("certificate renewed", "profile", profile, "serial", next.Leaf().SerialNumber.Text(16), "not_after", next.Leaf().NotAfter)
		},
		OnError: func(err error) { p.lg.Warn("certificate renewal failed; retrying", "profile", profile, "err", err) },
	})
}

// persistCA writes the CA record of a bootstrapping cluster from memory into
// etcd, unchanged (it is sealed to its key path), and switches the CA to it.
func (p *nodePKI) persistCA(ctx context.Context, mem *memStore, kv *etcdstore.KV, sealer pki.Sealer) error {
	rec, err := mem.Get(ctx, pki.DefaultCAStoreKey)
	if err != nil {
		return err
	}
	if ok, err := kv.CompareAndSwap(ctx, pki.DefaultCAStoreKey, nil, rec); err != nil || !ok {
		if err == nil {
			err = errors.New("a CA record already exists")
		}
		return fmt.Errorf("server: store the cluster CA: %w", err)
	}
	p.ca.Close()
	// A staged import has done its job: its key now lives only in etcd,
	// sealed. Leave no plaintext CA key on disk.
	for _, f := range []string{importKeyFile, importCertFile} {
		if err := os.Remove(filepath.Join(p.dir, f)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("server: remove the staged CA import: %w", err)
		}
	}
	return p.loadCA(ctx, kv, sealer)
}

// loadCA loads the cluster CA from etcd so this node can issue.
func (p *nodePKI) loadCA(ctx context.Context, kv *etcdstore.KV, sealer pki.Sealer) error {
	ca, err := pki.Load(ctx, pki.Config{Store: kv, Sealer: sealer}, pki.WithKeyPool(caKeyPool))
	if err != nil {
		return fmt.Errorf("server: load the cluster CA from etcd: %w", err)
	}
	if p.ca != nil {
		p.ca.Close() // the bootstrap's in-memory CA
	}
	p.ca = ca
	return nil
}

// caKeyPool is how many certificate keys the CA keeps generated ahead, and
// seedEphemeralPool how many sealing keys the seed service does: a Follower
// seed takes two of the first and one of the second, so a startup storm of
// 256 pods finds its keys ready.
const (
	caKeyPool         = 512
	seedEphemeralPool = 256
)

// etcdTLS names the files of both etcd links: the node certificate is the
// node's identity as an etcd client, the peer certificate etcd's identity
// when it dials its peers. etcd reads them on every handshake, so a renewal
// only rewrites them. Who may connect to this member's etcd ports is the
// gate's decision (etcdGate), not etcd's.
func (p *nodePKI) etcdTLS() (client, peer *cluster.TLSFiles) {
	ca := filepath.Join(p.dir, caFile)
	return &cluster.TLSFiles{CertFile: filepath.Join(p.dir, nodeCertFile), KeyFile: filepath.Join(p.dir, nodeKeyFile), CAFile: ca},
		&cluster.TLSFiles{CertFile: filepath.Join(p.dir, peerCertFile), KeyFile: filepath.Join(p.dir, peerKeyFile), CAFile: ca}
}

// Profiles the etcd ports admit: a member's node certificate on the client
// port (etcd-client is the profile for a node's etcd identity alone), its
// etcd peer certificate on the peer port. The gate adds that the
// certificate's subject must be a current member.
var (
	etcdClientProfiles = []pki.ProfileName{pki.ProfileLeaderServer, pki.ProfileEtcdClient}
	etcdPeerProfiles   = []pki.ProfileName{pki.ProfileEtcdPeer}
)

// etcdGate is the gate in front of this member's etcd ports: the node
// certificate serves the client port, the peer certificate the peer port;
// each admits only its profiles, never a revoked serial, and only current
// members (cluster.GateConfig).
func (p *nodePKI) etcdGate(socketDir string, lg *slog.Logger) (*cluster.GateConfig, error) {
	client, err := pki.ServerTLS(p.roots, p.node, pki.WithRevocations(p.revoked), pki.WithPeerProfiles(etcdClientProfiles...))
	if err != nil {
		return nil, err
	}
	peer, err := pki.ServerTLS(p.roots, p.peer, pki.WithRevocations(p.revoked), pki.WithPeerProfiles(etcdPeerProfiles...))
	if err != nil {
		return nil, err
	}
	return &cluster.GateConfig{ClientTLS: client, PeerTLS: peer, SocketDir: socketDir, Logger: lg}, nil
}

// loadCRL fills the revocation set from tls/crl.der, the list this node
// last wrote, so that its etcd gate refuses revoked certificates from its
// first connection on, before the revocation watch has read etcd. A list
// that is missing (a Standby's first start) or not signed by the cluster CA
// is ignored.
func (p *nodePKI) loadCRL() {
	der, err := os.ReadFile(filepath.Join(p.dir, crlFile))
	if err != nil {
		return
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		p.lg.Warn("unreadable revocation list; the revocation watch replaces it", "file", filepath.Join(p.dir, crlFile), "err", err)
		return
	}
	for _, r := range p.roots {
		if crl.CheckSignatureFrom(r) == nil {
			serials := make([]*big.Int, 0, len(crl.RevokedCertificateEntries))
			for _, e := range crl.RevokedCertificateEntries {
				serials = append(serials, e.SerialNumber)
			}
			p.revoked.Add(serials...)
			return
		}
	}
	p.lg.Warn("the revocation list is not signed by the cluster CA; ignoring it", "file", filepath.Join(p.dir, crlFile))
}

// writeCRL signs the current revocations into tls/crl.der (atomically):
// the list a restarting node's etcd gate starts from (loadCRL).
func (p *nodePKI) writeCRL() error {
	if p.ca == nil {
		return nil
	}
	p.fileMu.Lock()
	defer p.fileMu.Unlock()
	p.crlNumber++
	der, err := p.ca.CRL(p.revoked.Serials(), big.NewInt(time.Now().UnixNano()+p.crlNumber), time.Now(), 7*24*time.Hour)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.dir, crlFile), der, 0o644)
}

// serverTLS is the config of the gRPC and HTTP listeners: the node's
// certificate; a client certificate is verified (and checked against
// revocations) when one is presented, since Conjur clients authenticate with
// tokens while cluster nodes add mTLS.
func (p *nodePKI) serverTLS() (*tls.Config, error) {
	return pki.ServerTLS(p.roots, p.node, pki.WithRevocations(p.revoked), pki.WithOptionalClientCert())
}

// selfClientTLS is the gateway's mTLS config toward the node's own gRPC.
func (p *nodePKI) selfClientTLS() (*tls.Config, error) {
	return pki.ClientTLS(p.roots, "127.0.0.1", p.node, pki.WithRevocations(p.revoked))
}

// bindCerts records the node's current certificates as the ones its
// member may reach etcd with (cluster.BindCerts): a node of a cluster made
// before the records existed gets one, and a node restarting finds its own
// there already.
func (p *nodePKI) bindCerts(ctx context.Context, cli *clientv3.Client, name string) error {
	return cluster.BindCerts(ctx, cli, name, p.node.Current().Leaf().SerialNumber.Text(16), p.peer.Current().Leaf().SerialNumber.Text(16))
}

// run renews the node's certificates and keeps the revocation set current
// until ctx ends.
func (p *nodePKI) run(ctx context.Context, cli *clientv3.Client) error {
	p.etcd.Store(cli)
	errc := make(chan error, 3)
	go func() { errc <- p.node.Run(ctx) }()
	go func() { errc <- p.peer.Run(ctx) }()
	go func() { errc <- p.watchRevocations(ctx, cli) }()
	var first error
	for range 3 {
		if err := <-errc; err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

// watchRevocations mirrors /sower/pki/revoked/ into the in-memory set every
// handshake consults.
func (p *nodePKI) watchRevocations(ctx context.Context, cli *clientv3.Client) error {
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, revokedPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("server: read revocations: %w", err)
		}
		serials := make([]*big.Int, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			if n, ok := serialOf(string(kv.Key)); ok {
				serials = append(serials, n)
			}
		}
		p.revoked.Replace(serials)
		p.revocationsChanged()
		if err := p.writeCRL(); err != nil {
			p.lg.Warn("write the revocation list", "err", err)
		}
		wc := cli.Watch(ctx, revokedPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wc {
			if wr.Err() != nil {
				break // compacted or cancelled: resync
			}
			for _, ev := range wr.Events {
				if n, ok := serialOf(string(ev.Kv.Key)); ok {
					if ev.Type == clientv3.EventTypeDelete {
						p.revoked.Remove(n)
					} else {
						p.revoked.Add(n)
					}
				}
			}
			p.revocationsChanged()
			if err := p.writeCRL(); err != nil {
				p.lg.Warn("write the revocation list", "err", err)
			}
		}
	}
	return nil
}

func (p *nodePKI) revocationsChanged() {
	for _, f := range p.onRevoked {
		f()
	}
}

func serialOf(key string) (*big.Int, bool) {
	return new(big.Int).SetString(strings.TrimPrefix(key, revokedPrefix), 16)
}
