package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestPprofAddrLoopbackOnly(t *testing.T) {
	tests := map[string]struct {
		addr   string
		remote bool
		ok     bool
	}{
		"IPv4 loopback":                {"127.0.0.1:6060", false, true},
		"another loopback address":     {"127.0.0.9:6060", false, true},
		"IPv6 loopback":                {"[::1]:6060", false, true},
		"localhost":                    {"localhost:6060", false, true},
		"every interface":              {"0.0.0.0:6060", false, false},
		"empty host (every interface)": {":6060", false, false},
		"a routable address":           {"10.1.2.3:6060", false, false},
		"a host name":                  {"node-1.example.com:6060", false, false},
		"every interface, allowed":     {"0.0.0.0:6060", true, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := checkPprofAddr(tc.addr, tc.remote)
			if (err == nil) != tc.ok {
				t.Fatalf("checkPprofAddr(%q, %v) = %v, want ok=%v", tc.addr, tc.remote, err, tc.ok)
			}
			if err != nil && (!errors.Is(err, errPprofNotLoopback) || !strings.Contains(err.Error(), "--pprof-allow-remote")) {
				t.Fatalf("error %q should say the listener is loopback only and name --pprof-allow-remote", err)
			}
		})
	}
	if err := checkPprofAddr("6060", false); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("a bare port: %v", err)
	}
}

// TestPprofOffByDefaultOnWhenAsked: no address serves nothing (the flag's
// default is empty); an address serves the profiles.
func TestPprofOffByDefaultOnWhenAsked(t *testing.T) {
	fs := newServerCommand().Flags()
	if def := fs.Lookup("pprof").DefValue; def != "" {
		t.Fatalf("--pprof defaults to %q; profiling must be off unless asked for", def)
	}
	if def := fs.Lookup("pprof-allow-remote").DefValue; def != "false" {
		t.Fatalf("--pprof-allow-remote defaults to %q", def)
	}
	if a, stop, err := startPprof("", false, nil); err != nil || a != nil {
		t.Fatalf("startPprof(\"\") = %v, %v; want nothing served", a, err)
	} else {
		stop()
	}
	a, stop, err := startPprof("127.0.0.1:0", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for path, want := range map[string]string{"/debug/pprof/": "goroutine", "/debug/pprof/cmdline": "", "/debug/pprof/goroutine?debug=1": "goroutine profile"} {
		resp, err := http.Get("http://" + a.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s = %d %.200q", path, resp.StatusCode, body)
		}
	}
	if _, _, err := startPprof("0.0.0.0:0", false, nil); err == nil {
		t.Fatal("a listener on every interface started without --pprof-allow-remote")
	}
}
