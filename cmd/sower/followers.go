package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

func newClusterFollowersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "followers",
		Short: "List the Followers attached to every quorum node, with their lag",
		Example: `  sower cluster followers
  sower cluster followers --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp sowerv1.ListFollowersResponse
			raw, err := clusterCall(cmd, http.MethodGet, nil, &resp, "v1", "followers")
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return printRaw(cmd.OutOrStdout(), raw)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNODE\tADDRESS\tAPPLIED\tSENT\tLAG\tLAG TIME\tSINCE\tSERIAL")
			for _, f := range resp.GetFollowers() {
				lagTime := time.Duration(f.GetLagSeconds() * float64(time.Second)).Round(time.Millisecond)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", f.GetName(), f.GetNode(), f.GetAddress(), f.GetAppliedRevision(), f.GetSentRevision(), f.GetLagRevisions(), lagTime, f.GetSince(), f.GetSerial())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, n := range resp.GetUnreachable() {
				fmt.Fprintf(cmd.OutOrStdout(), "warning: node %s did not answer; its Followers are not listed\n", n)
			}
			return nil
		},
	}
	clusterFlags(cmd)
	return cmd
}
