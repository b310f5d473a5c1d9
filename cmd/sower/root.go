package main

import (
	"github.com/spf13/cobra"
)

// usageError marks an error in what the user typed or configured: the
// process exits 2, as for a bad flag.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sower",
		Short: "Cluster bootstrap and seed distribution for a Conjur-style secrets cluster",
		Long: `sower runs the nodes of a secrets cluster: a Leader that holds all writes,
the CA and policy; Standbys in the Leader's etcd quorum that can take over;
and read-only Followers that start from a seed the Leader issues.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	root.AddCommand(newServerCommand(), newConfigCommand(), newCACommand(), newSeedCommand(), newAuditCommand(), newPolicyCommand(), newKeysCommand(),
		newClusterCommand(), newStandbyCommand(), newFollowerCommand())
	return root
}
