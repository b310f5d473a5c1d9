package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"filippo.io/age"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/server"
)

func newStandbyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "standby", Short: "Run this machine as a Standby of an existing cluster"}
	cmd.AddCommand(newStandbyJoinCommand())
	return cmd
}

func newStandbyJoinCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join",
		Short: "Join an existing cluster as a Standby from a Standby seed, then run the node",
		Long: `Join an existing cluster from a Standby seed and run the node (the same as
"sower server --seed ..."). The seed is verified against the CA pin and opened
with the age identity it was sealed to; its data key and certificates go into
the data dir; the node enrolls with the Leader (its single-use token), starts
etcd as a learner, and serves once the Leader has promoted it to a voter.

A data dir that already holds etcd data (a former Leader, a removed Standby)
restarts with that data unless --reenroll --yes discards it: remove the old
member first (sower cluster remove NAME on the Leader) and issue a new seed.`,
		Example: `  sower seed standby --host host/conjur/cluster/default/standby-1 --ip 10.0.0.12 \
      --out standby-1.seed --identity-out standby-1.key       # on an admin machine
  sower standby join --seed standby-1.seed --seed-identity standby-1.key \
      --ca-pin sha256:... --name standby-1 --data-dir /var/lib/sower`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runNodeCommand(cmd, true) },
	}
	nodeFlags(cmd.Flags())
	joinFlags(cmd.Flags())
	return cmd
}

// joinFlags declares how a node joins an existing cluster from a seed.
func joinFlags(fs *pflag.FlagSet) {
	fs.String("seed", os.Getenv("SOWER_SEED"), "Standby seed file: join the existing cluster it names instead of bootstrapping a new one (env SOWER_SEED)")
	fs.String("seed-identity", os.Getenv("SOWER_SEED_IDENTITY"), "file with the age identity (AGE-SECRET-KEY-1...) the seed is sealed to (env SOWER_SEED_IDENTITY)")
	fs.String("ca-pin", os.Getenv("SOWER_CA_PIN"), "the cluster CA pin the seed must be signed under, sha256:<hex> from `sower ca pin` (env SOWER_CA_PIN)")
	fs.Bool("reenroll", false, "with --seed: delete this data dir's etcd data (a former Leader or removed member) and enroll again; needs --yes")
	fs.Bool("yes", false, "confirm that --reenroll deletes the data dir's etcd data")
}

// joinFromFlags reads the join flags; nil when no --seed is given (and
// required is false).
func joinFromFlags(fs *pflag.FlagSet, dataDir string, required bool) (*server.Join, error) {
	seedFile, _ := fs.GetString("seed")
	reenroll, _ := fs.GetBool("reenroll")
	yes, _ := fs.GetBool("yes")
	if seedFile == "" {
		if required {
			return nil, &usageError{errors.New("give --seed FILE: the Standby seed issued for this node (sower seed standby)")}
		}
		if reenroll {
			return nil, &usageError{errors.New("--reenroll needs --seed: a new Standby seed for this node")}
		}
		return nil, nil
	}
	raw, err := os.ReadFile(seedFile)
	if err != nil {
		return nil, &usageError{fmt.Errorf("seed: %w", err)}
	}
	idFile, _ := fs.GetString("seed-identity")
	if idFile == "" {
		return nil, &usageError{errors.New("give --seed-identity FILE: the age identity the seed is sealed to")}
	}
	idRaw, err := os.ReadFile(idFile)
	if err != nil {
		return nil, &usageError{fmt.Errorf("seed-identity: %w", err)}
	}
	ids, err := age.ParseIdentities(bytes.NewReader(idRaw))
	if err != nil {
		return nil, &usageError{fmt.Errorf("seed-identity %s: %w", idFile, err)}
	}
	pinStr, _ := fs.GetString("ca-pin")
	if pinStr == "" {
		return nil, &usageError{errors.New("give --ca-pin: the cluster CA pin (run `sower ca pin` on the Leader), which the seed must be signed under")}
	}
	pin, err := pki.ParsePin(pinStr)
	if err != nil {
		return nil, &usageError{fmt.Errorf("ca-pin: %w", err)}
	}
	if reenroll && !yes {
		return nil, &usageError{fmt.Errorf("--reenroll deletes the etcd data in %s; add --yes to confirm", filepath.Join(dataDir, "etcd"))}
	}
	return &server.Join{Seed: raw, Identity: ids[0], Pin: pin, Reenroll: reenroll}, nil
}
