package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

func newSeedCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "seed", Short: "Issue, list, revoke and unpack seeds"}
	cmd.AddCommand(newSeedIssueCommand("follower"), newSeedIssueCommand("standby"),
		newSeedListCommand(), newSeedRevokeCommand(), newSeedUnpackCommand(), newSeedKeygenCommand())
	return cmd
}

// recipientFor returns the age recipient to seal to: the given one, or a
// new identity written to identityOut (0600), which unpacking needs.
func recipientFor(cmd *cobra.Command) (string, error) {
	rcpt, _ := cmd.Flags().GetString("recipient")
	idOut, _ := cmd.Flags().GetString("identity-out")
	if rcpt != "" {
		return rcpt, nil
	}
	if idOut == "" {
		return "", &usageError{errors.New("give --recipient (an age1... public key of the node) or --identity-out FILE to create a key pair")}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(idOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Never overwrite a key: a seed sealed to it may still be waiting
		// to be unpacked.
		return "", &usageError{fmt.Errorf("identity-out: %s exists; a new seed needs a new key pair: choose another file, delete this one if no seed sealed to it is still to be unpacked, or seal to that key by passing its recipient (age1..., printed when it was made) with --recipient instead", idOut)}
	}
	if err != nil {
		return "", &usageError{fmt.Errorf("identity-out: %w", err)}
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, id.String()); err != nil {
		return "", err
	}
	return id.Recipient().String(), nil
}

func newSeedIssueCommand(kind string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   kind,
		Short: "Issue a " + kind + " seed, sealed to an age key, into a file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				return &usageError{errors.New("give --out FILE for the seed")}
			}
			rcpt, err := recipientFor(cmd)
			if err != nil {
				return err
			}
			form := url.Values{"recipient": {rcpt}}
			if kind == "follower" {
				names, _ := cmd.Flags().GetStringSlice("hostname")
				form["follower_hostnames"] = []string{strings.Join(names, ",")}
			} else {
				host, _ := cmd.Flags().GetString("host")
				dns, _ := cmd.Flags().GetStringSlice("dns-name")
				ips, _ := cmd.Flags().GetStringSlice("ip")
				form.Set("host", host)
				form.Set("dns_names", strings.Join(dns, ","))
				form.Set("ip_addresses", strings.Join(ips, ","))
			}
			resp, body, err := c.doResp(cmd.Context(), http.MethodPost, c.url("configuration", c.account, "seed", kind), strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, body, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "seed %s written to %s (sealed; CA pin %s)\n", resp.Header.Get("X-Sower-Seed-Id"), out, resp.Header.Get("X-Sower-Ca-Pin"))
			return nil
		},
	}
	clientFlags(cmd.Flags())
	cmd.Flags().String("out", "", "file to write the sealed seed to")
	cmd.Flags().String("recipient", "", "age recipient (age1...) of the node that will unpack the seed")
	cmd.Flags().String("identity-out", "", "create a new age key pair, write its identity here (0600), seal to it")
	if kind == "follower" {
		cmd.Example = `  sower seed follower --hostname follower-0.conjur-followers.svc.cluster.local --identity-out f.key --out f.seed`
		cmd.Flags().StringSlice("hostname", nil, "the Follower's DNS name (repeat or comma-separate)")
	} else {
		cmd.Example = `  sower seed standby --host conjur/cluster/production/standby-1.example.internal --ip 10.0.0.12 --identity-out s.key --out s.seed`
		cmd.Flags().String("host", "", "the Standby's host id, conjur/cluster/<cluster>/<node name>")
		cmd.Flags().StringSlice("dns-name", nil, "more DNS names for the Standby's certificates")
		cmd.Flags().StringSlice("ip", nil, "the Standby's IP addresses")
	}
	return cmd
}

func newSeedListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued seeds (the audit trail)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			_, body, err := c.do(cmd.Context(), http.MethodGet, c.url("v1", "seeds"), nil, "")
			if err != nil {
				return err
			}
			var resp struct {
				Seeds []struct {
					ID, Kind, Requester, Host, IssuedAt, ExpiresAt, RevokedAt string
					Hostnames                                                 []string
				}
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tREQUESTER\tNAMES\tISSUED\tEXPIRES\tREVOKED")
			for _, s := range resp.Seeds {
				names := strings.Join(s.Hostnames, ",")
				if s.Host != "" {
					names = s.Host
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Kind, s.Requester, names, s.IssuedAt, s.ExpiresAt, s.RevokedAt)
			}
			return tw.Flush()
		},
	}
	clientFlags(cmd.Flags())
	return cmd
}

func newSeedRevokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a seed: its certificates are refused from the next handshake on, its enrollment token is void",
		Example: "  sower seed revoke 3f1c0e9a6b2d4c5e7f809a1b",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if _, _, err := c.do(cmd.Context(), http.MethodPost, c.url("v1", "seeds", args[0]+":revoke"), bytes.NewReader([]byte("{}")), "application/json"); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "seed %s revoked\n", args[0])
			return nil
		},
	}
	clientFlags(cmd.Flags())
	return cmd
}

func newSeedUnpackCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "unpack FILE",
		Short:   "Verify a seed (signature, pin, expiry, every hash) and unpack it into a directory",
		Example: `  sower seed unpack f.seed --identity f.key --ca-pin sha256:... --dir /var/lib/sower-follower`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pinStr, _ := cmd.Flags().GetString("ca-pin")
			pin, err := pki.ParsePin(pinStr)
			if err != nil {
				return &usageError{err}
			}
			dir, _ := cmd.Flags().GetString("dir")
			if dir == "" {
				return &usageError{errors.New("give --dir to unpack into")}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return &usageError{err}
			}
			defer f.Close()
			var m archive.Manifest
			if idFile, _ := cmd.Flags().GetString("identity"); idFile != "" {
				raw, err := os.ReadFile(idFile)
				if err != nil {
					return &usageError{err}
				}
				ids, err := age.ParseIdentities(bytes.NewReader(raw))
				if err != nil || len(ids) == 0 {
					return &usageError{fmt.Errorf("identity %s: not an age identity", idFile)}
				}
				m, err = archive.Unpack(f, dir, pin, ids[0])
				if err != nil {
					return err
				}
			} else {
				m, err = archive.UnpackPlain(f, dir, pin)
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s seed %s for %s unpacked into %s (expires %s)\n", m.Kind, m.SeedID, m.Node.Name, dir, m.ExpiresAt.Format("2006-01-02 15:04:05Z07:00"))
			return nil
		},
	}
	cmd.Flags().String("ca-pin", os.Getenv("SOWER_CA_PIN"), "the cluster CA pin (env SOWER_CA_PIN)")
	cmd.Flags().String("identity", "", "age identity file the seed was sealed to (omit for a plain seed)")
	cmd.Flags().String("dir", "", "directory to unpack into (created; must not exist or hold a seed)")
	return cmd
}

func newSeedKeygenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen FILE",
		Short: "Create the age key pair a node receives its seed with: the identity goes to FILE (0600), the recipient to stdout",
		Long: `Create an age X25519 key pair on the node that will unpack a seed. The
identity (private) is written to FILE with mode 0600 and never leaves the
node; the recipient (public, age1...) is printed, to be passed as --recipient
when the seed is requested. If FILE already holds an identity, its recipient
is printed and nothing is written, so the command is idempotent.`,
		Example: `  sower seed keygen /var/lib/sower/seed.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if raw, err := os.ReadFile(args[0]); err == nil {
				ids, err := age.ParseIdentities(bytes.NewReader(raw))
				if err != nil || len(ids) != 1 {
					return &usageError{fmt.Errorf("%s exists and is not an age identity; move it away", args[0])}
				}
				x, ok := ids[0].(*age.X25519Identity)
				if !ok {
					return &usageError{fmt.Errorf("%s is not an X25519 identity", args[0])}
				}
				fmt.Fprintln(cmd.OutOrStdout(), x.Recipient().String())
				return nil
			}
			id, err := age.GenerateX25519Identity()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return &usageError{err}
			}
			if _, err := fmt.Fprintln(f, id.String()); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id.Recipient().String())
			return nil
		},
	}
	return cmd
}
