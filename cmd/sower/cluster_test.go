package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/sowerproject/sower/internal/testutil"
)

func TestClusterUsageErrorsExit2(t *testing.T) {
	// Build first: runSower's one-minute deadline would include the build.
	testutil.BuildSower(t)
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "s.seed")
	os.WriteFile(seedFile, []byte("not opened before the flags are checked"), 0o600)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "s.key")
	os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600)
	pin := "sha256:" + strings.Repeat("ab", 32)
	tests := map[string]struct {
		args []string
		want string
	}{
		"reenroll without a seed":    {[]string{"server", "--reenroll"}, "--reenroll needs --seed"},
		"missing seed file":          {[]string{"server", "--seed", filepath.Join(dir, "none")}, "seed:"},
		"seed without identity":      {[]string{"server", "--seed", seedFile}, "give --seed-identity"},
		"seed without pin":           {[]string{"server", "--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", ""}, "give --ca-pin"},
		"bad pin":                    {[]string{"server", "--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", "md5:00"}, "ca-pin"},
		"identity not an age key":    {[]string{"server", "--seed", seedFile, "--seed-identity", seedFile, "--ca-pin", pin}, "seed-identity"},
		"reenroll unconfirmed":       {[]string{"server", "--seed", seedFile, "--seed-identity", keyFile, "--ca-pin", pin, "--reenroll"}, "add --yes to confirm"},
		"standby join without seed":  {[]string{"standby", "join"}, "give --seed FILE"},
		"failover ttl below minimum": {[]string{"config", "print", "--failover-ttl", "1s"}, "failover-ttl \"1s\": give a duration of at least 2s"},
		"bad cluster name":           {[]string{"config", "print", "--cluster", "a:b"}, "cluster \"a:b\""},
		"bad output format":          {[]string{"cluster", "members", "-o", "yaml"}, "output \"yaml\": use text or json"},
		"remove needs a name":        {[]string{"cluster", "remove"}, "accepts 1 arg"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			if args[0] != "cluster" {
				args = append(args, "--data-dir", filepath.Join(dir, "data"))
			}
			code, out := runSower(t, []string{"SOWER_CA_PIN="}, args...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want exit 2 mentioning %q", code, out, tc.want)
			}
		})
	}
}
