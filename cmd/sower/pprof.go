package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/spf13/pflag"
)

// pprofFlags declares the opt-in profiling listener (as etcd's
// --enable-pprof, but on a listener of its own: the profiles never share
// the API's port, its TLS or its authentication).
func pprofFlags(fs *pflag.FlagSet) {
	fs.String("pprof", "", "serve Go's net/http/pprof profiles (/debug/pprof/) on this address, plain HTTP without authentication, for profiling a running node; loopback only (such as 127.0.0.1:6060) unless --pprof-allow-remote; off by default")
	fs.Bool("pprof-allow-remote", false, "let --pprof listen on an address other than loopback (anyone who reaches it can read the node's memory profile and stacks)")
}

// errPprofNotLoopback refuses a profiling listener off loopback.
var errPprofNotLoopback = errors.New("pprof: the profiling listener serves without authentication, so it listens on loopback only")

// checkPprofAddr refuses a listen address that is not loopback unless the
// operator allowed it: a host that is empty or 0.0.0.0 listens everywhere.
func checkPprofAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("pprof %q: give host:port, such as 127.0.0.1:6060: %v", addr, err)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q is not a loopback address; use 127.0.0.1:6060 (and an SSH tunnel or kubectl port-forward to reach it), or add --pprof-allow-remote", errPprofNotLoopback, addr)
}

// startPprof serves the profiles on addr until stop is called. An empty
// addr serves nothing (the default).
func startPprof(addr string, allowRemote bool, lg *slog.Logger) (bound net.Addr, stop func(), err error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	if err := checkPprofAddr(addr, allowRemote); err != nil {
		return nil, nil, &usageError{err}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("pprof: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// A CPU profile or trace runs for its ?seconds=; the write timeout
	// leaves room for the longest one worth asking for here.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 5 * time.Minute}
	go func() { _ = srv.Serve(l) }()
	if lg != nil {
		lg.Warn("pprof profiles served without authentication", "addr", "http://"+l.Addr().String()+"/debug/pprof/")
	}
	return l.Addr(), func() { _ = srv.Close() }, nil
}
