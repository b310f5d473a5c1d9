package testutil

import (
	"fmt"
	"os"
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
	if err := os.Setenv("HOME", home); err != nil {
		fmt.Fprintln(os.Stderr, "set HOME:", err)
		return 1
	}
	return m.Run()
}
