package testutil

import (
	"net"
	"testing"
)

// FreeAddrs returns n distinct "127.0.0.1:port" addresses that were free a
// moment ago. etcd cannot listen on port 0 (it advertises its URLs), so
// tests that start members reserve ports this way.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	ls := make([]net.Listener, 0, n)
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve a loopback port: %v", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}
