package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RunWithOwnHome runs a package's tests with HOME pointing at a fresh
// directory, removed afterwards. conjur-api-go keeps the credentials of
// every client it makes in ~/.netrc; tests that use it must never write
// into the home of the user (or CI) running them. Call it from TestMain.
func RunWithOwnHome(m *testing.M) int {
	home, err := os.MkdirTemp("", "sower-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "make a test HOME:", err)
		return 1
	}
	defer os.RemoveAll(home)
	// The go command finds its build and module caches (and its settings)
	// under HOME unless told otherwise; pin them first, or every `go build`
	// these tests run (BuildSower) would start cold and download modules.
	if out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV").Output(); err == nil {
		vals := strings.Split(strings.TrimSpace(string(out)), "\n")
		for i, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOENV"} {
			if i < len(vals) && os.Getenv(k) == "" && vals[i] != "" {
				os.Setenv(k, vals[i])
			}
		}
	}
	if err := os.Setenv("HOME", home); err != nil {
		fmt.Fprintln(os.Stderr, "set HOME:", err)
		return 1
	}
	return m.Run()
}
