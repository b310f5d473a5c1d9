package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver"
)

// ErrNotMember is wrapped by the gate's refusal of a certificate whose
// subject is not a current member of the quorum (nor a learner whose join
// is under way).
var ErrNotMember = errors.New("cluster: not a current member of the quorum")

// GateConfig puts a gate in front of the member's etcd ports. The gate owns
// the public client and peer listeners (EtcdConfig.ClientAddr, PeerAddr):
// it terminates TLS with these configs, admits a connection only when the
// certificate's common name is a current member of the quorum (or a learner
// the Leader has just added, by its join record), and forwards the bytes
// to etcd, which listens on Unix sockets in SocketDir that nothing else
// can reach. It checks every open connection again every RecheckInterval
// and on Etcd.Recheck, and closes those that no longer pass: a certificate
// revoked, expired, or of a member that was removed.
//
// etcd's own TLS options cannot do this: they check a certificate against
// the CA and a CRL file once, at the handshake, and know nothing of the
// membership.
type GateConfig struct {
	// ClientTLS and PeerTLS are the server configs of the client and peer
	// listeners. Each must require and verify a client certificate, and
	// its VerifyConnection must refuse the profiles and revoked serials
	// the link does not admit (pki.ServerTLS with WithPeerProfiles and
	// WithRevocations builds such a config); the gate calls it again on
	// every recheck.
	ClientTLS, PeerTLS *tls.Config
	// SocketDir is the private directory etcd's sockets live in (created
	// 0700). When its path is too long for a Unix socket, a private
	// directory under the system's temporary directory is used instead.
	SocketDir string
	// RecheckInterval is how often open connections are checked again
	// (default DefaultGateRecheck).
	RecheckInterval time.Duration
	// Logger receives refused and closed connections. Nil discards.
	Logger *slog.Logger
}

// DefaultGateRecheck is how often the gate checks its open connections
// again: the longest a revoked or removed certificate's open connection
// (an etcd watch, a raft stream) lives on.
const DefaultGateRecheck = 500 * time.Millisecond

// gateHandshakeTimeout bounds a TLS handshake on a gate listener.
const gateHandshakeTimeout = 10 * time.Second

// maxSocketPath is the longest path a Unix socket may have on Linux
// (sun_path is 108 bytes with its terminating NUL), with a margin.
const maxSocketPath = 100

type linkKind string

const (
	linkClient linkKind = "client"
	linkPeer   linkKind = "peer"
)

// gates are a member's two gates and what they share.
type gates struct {
	client, peer *gate
	view         *memberView
	tmpDir       string // a temporary socket dir to remove on close
	stop         chan struct{}
	wg           sync.WaitGroup
	once         sync.Once
}

// memberView answers who is a member, from the running etcd server.
type memberView struct {
	cur atomic.Pointer[memberSource]
}

type memberSource struct {
	srv *etcdserver.EtcdServer
	cli *clientv3.Client
}

// errMemberStopped is what a read of a stopped member's store answers.
var errMemberStopped = errors.New("the local etcd member has stopped")

// get reads the local member's store as one of the server's attached
// goroutines: etcd waits for those before it closes its backend, and a
// serializable read that reaches a closed backend panics. A member stops
// on its own (removed from the cluster) while the gates still recheck
// connections, so every gate read goes through here.
func (src *memberSource) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var (
		resp *clientv3.GetResponse
		err  error
	)
	ran := make(chan struct{})
	src.srv.GoAttach(func() {
		defer close(ran)
		resp, err = src.cli.Get(ctx, key, opts...)
	})
	select {
	case <-ran:
		return resp, err
	case <-src.srv.StopNotify():
		// GoAttach skipped the read (the server was stopping), or it ran
		// and the server stopped after it: etcd closes StopNotify only
		// once every attached goroutine has returned.
		select {
		case <-ran:
			return resp, err
		default:
			return nil, errMemberStopped
		}
	case <-ctx.Done():
		// The read keeps its goroutine until the client gives up on ctx.
		return nil, ctx.Err()
	}
}

// openGates binds the public listeners (before etcd starts, so a port in
// use fails early) and picks the private socket paths. Serving starts with
// start, once etcd runs.
func openGates(c EtcdConfig) (*gates, error) {
	gc := c.Gate
	if gc.ClientTLS == nil || gc.PeerTLS == nil {
		return nil, errors.New("cluster: the etcd gate needs the client and peer TLS configs")
	}
	if gc.SocketDir == "" {
		return nil, errors.New("cluster: the etcd gate needs a socket directory")
	}
	dir, err := filepath.Abs(gc.SocketDir)
	if err != nil {
		return nil, fmt.Errorf("cluster: socket directory %s: %w", gc.SocketDir, err)
	}
	g := &gates{view: &memberView{}, stop: make(chan struct{})}
	if len(filepath.Join(dir, "etcd-client.sock")) > maxSocketPath {
		if dir, err = os.MkdirTemp("", "sower-etcd-"); err != nil {
			return nil, fmt.Errorf("cluster: a private directory for etcd's sockets: %w", err)
		}
		g.tmpDir = dir
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: make %s private: %w", dir, err)
	}
	lg := gc.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	interval := gc.RecheckInterval
	if interval <= 0 {
		interval = DefaultGateRecheck
	}
	g.client, err = newGate(linkClient, c.ClientAddr, "etcd-client-addr", filepath.Join(dir, "etcd-client.sock"), gc.ClientTLS, g.view, lg)
	if err != nil {
		g.close()
		return nil, err
	}
	g.peer, err = newGate(linkPeer, c.PeerAddr, "etcd-peer-addr", filepath.Join(dir, "etcd-peer.sock"), gc.PeerTLS, g.view, lg)
	if err != nil {
		g.close()
		return nil, err
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				g.recheck()
			}
		}
	}()
	return g, nil
}

// start serves both listeners; etcd is running and src answers who the
// members are.
func (g *gates) start(src *memberSource) {
	g.view.cur.Store(src)
	for _, gt := range []*gate{g.client, g.peer} {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); gt.serve() }()
	}
}

func (g *gates) recheck() {
	for _, gt := range []*gate{g.client, g.peer} {
		if gt != nil {
			gt.recheck()
		}
	}
}

// close closes the listeners and every open connection, and waits.
func (g *gates) close() {
	g.once.Do(func() {
		close(g.stop)
		for _, gt := range []*gate{g.client, g.peer} {
			if gt != nil {
				gt.close()
			}
		}
		g.wg.Wait()
		for _, gt := range []*gate{g.client, g.peer} {
			if gt != nil {
				gt.wg.Wait()
			}
		}
		if g.tmpDir != "" {
			os.RemoveAll(g.tmpDir)
		}
	})
}

// gate is one public etcd port.
type gate struct {
	kind    linkKind
	lis     net.Listener
	tls     *tls.Config
	verify  func(tls.ConnectionState) error // the caller's checks: chain, profile, revocation
	backend string                          // etcd's Unix socket
	view    *memberView
	lg      *slog.Logger

	mu      sync.Mutex
	conns   map[*gateConn]struct{}
	pending map[net.Conn]struct{} // in their handshake
	closed  bool
	wg      sync.WaitGroup

	logMu   sync.Mutex
	lastLog map[string]time.Time
}

type gateConn struct {
	front, back net.Conn
	cs          tls.ConnectionState
	name        string
	once        sync.Once
}

func (c *gateConn) close() {
	c.once.Do(func() {
		c.front.Close()
		if c.back != nil {
			c.back.Close()
		}
	})
}

func newGate(kind linkKind, addr, key, backend string, base *tls.Config, view *memberView, lg *slog.Logger) (*gate, error) {
	if base.VerifyConnection == nil || base.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, fmt.Errorf("cluster: the etcd %s gate's TLS config must require and verify client certificates", kind)
	}
	if _, err := hostURL("https", addr, key); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: etcd %s port %s (--%s): %v", ErrAddrInUse, kind, addr, key, err)
	}
	g := &gate{kind: kind, lis: lis, verify: base.VerifyConnection, backend: backend, view: view,
		lg: lg.With("component", "etcd-gate", "link", string(kind)), conns: map[*gateConn]struct{}{}, pending: map[net.Conn]struct{}{}, lastLog: map[string]time.Time{}}
	g.tls = base.Clone()
	switch kind {
	case linkClient:
		// gRPC over TLS needs h2 by ALPN; etcd's HTTP endpoints take
		// HTTP/1.1 on the same port.
		g.tls.NextProtos = []string{"h2", "http/1.1"}
		// A client that is not a member fails its handshake, so it sees
		// a TLS alert rather than a closed connection.
		g.tls.VerifyConnection = g.check
	case linkPeer:
		// etcd's peers speak HTTP/1.1. Membership is checked after the
		// handshake, so that a removed member can be told so (see
		// answerRemoved).
		g.tls.NextProtos = []string{"http/1.1"}
	}
	return g, nil
}

// check is everything a connection must pass, at its handshake and on
// every recheck.
func (g *gate) check(cs tls.ConnectionState) error {
	if err := g.verify(cs); err != nil {
		return err
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster: client certificate required")
	}
	leaf := cs.PeerCertificates[0]
	if time.Now().After(leaf.NotAfter) {
		return fmt.Errorf("cluster: certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return g.view.admit(leaf.Subject.CommonName, leaf.SerialNumber.Text(16))
}

func (g *gate) serve() {
	var backoff time.Duration
	for {
		c, err := g.lis.Accept()
		if err != nil {
			g.mu.Lock()
			closed := g.closed
			g.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.lg.Warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.handle(c) }()
	}
}

func (g *gate) handle(raw net.Conn) {
	// A connection still in its handshake is closed with the gate too, so
	// that closing never waits for a slow or silent client.
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		raw.Close()
		return
	}
	g.pending[raw] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, raw)
		g.mu.Unlock()
	}()
	front := tls.Server(raw, g.tls)
	raw.SetDeadline(time.Now().Add(gateHandshakeTimeout))
	if err := front.Handshake(); err != nil {
		g.refused(raw.RemoteAddr(), "", err)
		raw.Close()
		return
	}
	cs := front.ConnectionState()
	name := cs.PeerCertificates[0].Subject.CommonName
	if g.kind == linkPeer {
		if err := g.check(cs); err != nil {
			g.refused(raw.RemoteAddr(), name, err)
			if errors.Is(err, ErrNotMember) {
				g.answerRemoved(front)
			}
			front.Close()
			return
		}
	}
	raw.SetDeadline(time.Time{})
	back, err := net.DialTimeout("unix", g.backend, 5*time.Second)
	if err != nil {
		g.lg.Warn("cannot reach etcd behind the gate", "err", err)
		front.Close()
		return
	}
	gc := &gateConn{front: front, back: back, cs: cs, name: name}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		gc.close()
		return
	}
	g.conns[gc] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.conns, gc)
		g.mu.Unlock()
		gc.close()
	}()
	done := make(chan struct{}, 2)
	go func() { io.Copy(back, front); done <- struct{}{} }()
	go func() { io.Copy(front, back); done <- struct{}{} }()
	<-done
	gc.close()
	<-done
}

// answerRemoved answers a peer whose member was removed from the quorum
// as etcd itself would, so that its etcd learns it was removed and stops
// (410 Gone to a raft stream, 403 to a raft message); any other peer that
// is not a member only sees the connection close. It reads one request,
// bounded in size and time.
func (g *gate) answerRemoved(c *tls.Conn) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(io.LimitReader(c, 64<<10)))
	if err != nil {
		return
	}
	id, err := types.IDFromString(req.Header.Get("X-Server-From"))
	if err != nil || !g.view.removed(id) {
		return
	}
	status := http.StatusForbidden
	if req.Method == http.MethodGet {
		status = http.StatusGone
	}
	body := "removed member\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Server-Version: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), version.Version, len(body), body)
}

// refused logs a refused connection, at most once a minute for the same
// name and reason.
func (g *gate) refused(addr net.Addr, name string, err error) {
	if errors.Is(err, io.EOF) {
		return // a port probe, or a client that gave up
	}
	key := name + "\x00" + err.Error()
	g.logMu.Lock()
	last, seen := g.lastLog[key]
	now := time.Now()
	if seen && now.Sub(last) < time.Minute {
		g.logMu.Unlock()
		return
	}
	if len(g.lastLog) > 1024 {
		clear(g.lastLog)
	}
	g.lastLog[key] = now
	g.logMu.Unlock()
	g.lg.Warn("refused a connection to etcd", "remote", addr.String(), "name", name, "err", err)
}

// recheck closes the open connections that no longer pass check.
func (g *gate) recheck() {
	g.mu.Lock()
	conns := make([]*gateConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		if err := g.check(c.cs); err != nil {
			g.lg.Warn("closed an open connection to etcd", "name", c.name, "remote", c.front.RemoteAddr().String(), "reason", err)
			c.close()
		}
	}
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*gateConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	for c := range g.pending {
		c.Close()
	}
	g.mu.Unlock()
	g.lis.Close()
	for _, c := range conns {
		c.close()
	}
}

// admit returns nil when name is a current member's name, or the name a
// learner was enrolled under that has not started yet (etcd learns a
// member's name only when it first runs, and a joining member talks to the
// peers before that), and serial is one of the certificates recorded for
// that name (see CertsPrefix).
func (v *memberView) admit(name, serial string) error {
	src := v.cur.Load()
	if src == nil {
		return fmt.Errorf("%w: %q (the member list is not loaded yet)", ErrNotMember, name)
	}
	unstarted := false
	for _, m := range src.srv.Cluster().Members() {
		if m.Name == "" {
			unstarted = true
		} else if m.Name == name {
			return v.bound(src, name, serial)
		}
	}
	if unstarted && v.joining(src, name) {
		return v.bound(src, name, serial)
	}
	return fmt.Errorf("%w: %q", ErrNotMember, name)
}

// joining reports whether name has a join record for a learner that is a
// member and has not started yet.
func (v *memberView) joining(src *memberSource, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := src.get(ctx, JoinsPrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return false
	}
	for _, kv := range resp.Kvs {
		var rec joinRecord
		if json.Unmarshal(kv.Value, &rec) != nil || rec.Name != name {
			continue
		}
		id, err := types.IDFromString(string(kv.Key[len(JoinsPrefix):]))
		if err != nil {
			continue
		}
		if m := src.srv.Cluster().Member(id); m != nil && m.Name == "" {
			return true
		}
	}
	return false
}

func (v *memberView) removed(id types.ID) bool {
	src := v.cur.Load()
	if src == nil {
		return false
	}
	rc, ok := src.srv.Cluster().(interface{ IsIDRemoved(types.ID) bool })
	return ok && rc.IsIDRemoved(id)
}
