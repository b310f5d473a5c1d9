// Package testutil holds helpers shared by sower's tests: free loopback
// ports for real listeners and a way to build the sower binary once per test
// process. Only _test.go files import it.
package testutil
