package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// maxBody bounds an answer's body; a larger one fails the request.
const maxBody = 1 << 20

// The load generator speaks HTTP/1.1 over TLS itself: one goroutine owns
// one kept-alive connection per server and writes each request's bytes
// straight to it. net/http's client hands every request between three
// goroutines (the caller's and the connection's read and write loops);
// on a machine whose few cores the load shares with the server it
// measures, that hand-off cost the server a visible share of them.

// prepare checks the target and builds the head of its request once.
func (t *Target) prepare() error {
	t.defaults()
	u, err := url.Parse(t.URL)
	if err != nil {
		return fmt.Errorf("target %s: url: %w", t.Name, err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("target %s: url %q: only https:// is supported", t.Name, t.URL)
	}
	t.addr = u.Host
	if u.Port() == "" {
		t.addr = net.JoinHostPort(u.Hostname(), "443")
	}
	var h bytes.Buffer
	fmt.Fprintf(&h, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sower-loadgen\r\n", t.Method, u.RequestURI(), u.Host)
	for k, v := range t.Headers {
		if !validHeader(k) || !validHeader(v) {
			return fmt.Errorf("target %s: header %q: no control characters allowed", t.Name, k)
		}
		fmt.Fprintf(&h, "%s: %s\r\n", http.CanonicalHeaderKey(k), v)
	}
	t.head = h.Bytes()
	return nil
}

func validHeader(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// dialer makes clients: the CA pool to trust and each request's timeout.
type dialer struct {
	pool    *x509.CertPool
	timeout time.Duration
}

func (d *dialer) client(ctx context.Context) *client {
	return &client{d: d, ctx: ctx, conns: map[string]*conn{}}
}

// client is one load goroutine's connections, one per server address and
// name, and its reused buffers. It is not safe for concurrent use.
type client struct {
	d     *dialer
	ctx   context.Context
	conns map[string]*conn
	req   []byte
	body  bytes.Buffer
}

type conn struct {
	tc   *tls.Conn
	br   *bufio.Reader
	stop func() bool
}

func (c *conn) close() {
	c.stop()
	c.tc.Close()
}

func (cl *client) close() {
	for k, c := range cl.conns {
		c.close()
		delete(cl.conns, k)
	}
}

func (cl *client) conn(ctx context.Context, t *Target) (*conn, error) {
	key := t.addr + "/" + t.ServerName
	if c, ok := cl.conns[key]; ok {
		return c, nil
	}
	nd := &net.Dialer{Timeout: cl.d.timeout}
	tc, err := (&tls.Dialer{NetDialer: nd, Config: &tls.Config{
		RootCAs: cl.d.pool, ServerName: t.ServerName, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
	}}).DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	c := &conn{tc: tc.(*tls.Conn), br: bufio.NewReaderSize(tc, 16<<10)}
	// A cancelled run (the probes' end) interrupts a request in flight.
	c.stop = context.AfterFunc(cl.ctx, func() { c.tc.SetDeadline(time.Unix(1, 0)) })
	cl.conns[key] = c
	return c, nil
}

// do sends the target's request once and checks the answer. A request
// the run's end (ctx) cut fails with ctx's error.
func (cl *client) do(ctx context.Context, t *Target) error {
	err := cl.roundTrip(ctx, t)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ctx.Err(), err)
	}
	return err
}

func (cl *client) roundTrip(ctx context.Context, t *Target) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	send := t.Body
	if len(t.Bodies) > 0 {
		send = t.Bodies[(t.sent.Add(1)-1)%int64(len(t.Bodies))]
	}
	c, err := cl.conn(ctx, t)
	if err != nil {
		return err
	}
	key := t.addr + "/" + t.ServerName
	fail := func(err error) error {
		c.close()
		delete(cl.conns, key)
		return err
	}
	deadline := time.Now().Add(cl.d.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.tc.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	w := append(cl.req[:0], t.head...)
	w = append(w, "Content-Length: "...)
	w = strconv.AppendInt(w, int64(len(send)), 10)
	w = append(w, "\r\n\r\n"...)
	w = append(w, send...)
	cl.req = w
	if _, err := c.tc.Write(w); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fail(err)
	}
	cl.body.Reset()
	n, err := cl.body.ReadFrom(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	switch {
	case err != nil:
		return fail(err)
	case n > maxBody:
		return fail(fmt.Errorf("%s %s: the answer's body is over %d bytes", t.Method, t.Name, maxBody))
	case resp.Close:
		fail(nil)
	}
	body := cl.body.Bytes()
	if resp.StatusCode != t.Status || t.Expect != "" && string(body) != t.Expect {
		return fmt.Errorf("%s %s: %d %.120q", t.Method, t.Name, resp.StatusCode, body)
	}
	return nil
}
