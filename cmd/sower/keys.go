package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "The cluster's data key"}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Add a data key version on every member and re-seal every secret in etcd under it, without downtime",
		Long: `Rotate the data key that seals every secret sower keeps in etcd (CA keys,
token signing keys, the API-key pepper, secret values). The new version is
handed to every member first, sealed under the current one; once all have
taken it, the Leader seals under it and re-seals every stored value. Old
versions stay in data.key so nothing ever fails to open.`,
		Example: "  sower keys rotate",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			_, out, err := c.do(cmd.Context(), http.MethodPost, c.url("v1", "data-key:rotate"), bytes.NewReader([]byte("{}")), "application/json")
			if err != nil {
				return err
			}
			var resp struct {
				Version           uint32
				Members           []string
				Resealed, Current string
			}
			if err := json.Unmarshal(out, &resp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "data key version %d on %s; %s values re-sealed, %s already current\n",
				resp.Version, strings.Join(resp.Members, ", "), orZero(resp.Resealed), orZero(resp.Current))
			return nil
		},
	}
	clientFlags(rotate.Flags())
	cmd.AddCommand(rotate)
	return cmd
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}
