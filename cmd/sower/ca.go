package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sowerproject/sower/pki"
)

func newCACommand() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The cluster CA: its pin, importing an existing CA"}
	cmd.AddCommand(newCAPinCommand(), newCAImportCommand(), newCARevokeCommand(), newCARevocationsCommand())
	return cmd
}

func newCAPinCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pin",
		Short: "Print the CA pin (sha256 of the root's public key) that clients pass as --ca-pin",
		Example: `  sower ca pin
  sower ca pin --ca-file /var/lib/sower/tls/ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file, _ := cmd.Flags().GetString("ca-file")
			if file == "" {
				dir, _ := cmd.Flags().GetString("data-dir")
				file = filepath.Join(dir, "tls", "ca.pem")
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				return &usageError{fmt.Errorf("read the CA bundle: %w; run this on the Leader or pass --ca-file", err)}
			}
			certs, err := pki.ParseCertificatesPEM(raw)
			if err != nil {
				return &usageError{fmt.Errorf("ca-file %s: %w", file, err)}
			}
			fmt.Fprintln(cmd.OutOrStdout(), pki.PinOf(certs[len(certs)-1]).String())
			return nil
		},
	}
	cmd.Flags().String("data-dir", "./.sower", "the node's data directory")
	cmd.Flags().String("ca-file", "", "a CA bundle (PEM) instead of the data dir's")
	return cmd
}

func newCAImportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Stage an existing root or intermediate CA (PEM cert + key) for a new cluster to use instead of creating one",
		Long: `Stage an existing CA for a data dir that has not started yet. The next
"sower server" on that data dir bootstraps the cluster with this CA: a root
(self-signed) gets a fresh intermediate, an intermediate (with its chain up to
the root in the cert file) signs directly. The key is checked against the
certificate now, and stored in etcd sealed under the data key at bootstrap.`,
		Example: `  sower ca import --data-dir /var/lib/sower --cert root.pem --key root-key.pem
  sower server --data-dir /var/lib/sower`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, _ := cmd.Flags().GetString("data-dir")
			certFile, _ := cmd.Flags().GetString("cert")
			keyFile, _ := cmd.Flags().GetString("key")
			if certFile == "" || keyFile == "" {
				return &usageError{errors.New("give both --cert and --key")}
			}
			if _, err := os.Stat(filepath.Join(dir, "etcd")); err == nil {
				return &usageError{fmt.Errorf("%s already holds a cluster; a CA can only be imported before the first start", dir)}
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return &usageError{err}
			}
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return &usageError{err}
			}
			// Check the pair the way bootstrap will, against a throwaway
			// store, so a bad pair fails now and not at first start.
			kr, err := pki.GenerateKeyring()
			if err != nil {
				return err
			}
			ca, err := pki.Import(context.Background(), pki.Config{Store: &scratchStore{m: map[string][]byte{}}, Sealer: kr}, certPEM, keyPEM)
			if err != nil {
				return &usageError{fmt.Errorf("import %s: %w", certFile, err)}
			}
			pin := ca.Pin().String()
			ca.Close()
			tls := filepath.Join(dir, "tls")
			if err := os.MkdirAll(tls, 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tls, "ca-import.pem"), certPEM, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(tls, "ca-import-key.pem"), keyPEM, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "staged the CA in %s (pin %s); start the node with: sower server --data-dir %s\n", tls, pin, dir)
			return nil
		},
	}
	cmd.Flags().String("data-dir", "./.sower", "the data directory of the node to bootstrap")
	cmd.Flags().String("cert", "", "PEM certificate of the CA (an intermediate followed by its chain)")
	cmd.Flags().String("key", "", "PEM private key of the CA")
	return cmd
}

// scratchStore is a throwaway pki.Store for validating an import.
type scratchStore struct{ m map[string][]byte }

func (s *scratchStore) Get(_ context.Context, k string) ([]byte, error) {
	v, ok := s.m[k]
	if !ok {
		return nil, pki.ErrNotFound
	}
	return v, nil
}

func (s *scratchStore) Put(_ context.Context, k string, v []byte) error { s.m[k] = v; return nil }

func newCARevokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a certificate by serial number; every node refuses it from its next handshake on",
		Example: `  sower ca revoke 3a:f1:07:9c --reason "laptop lost"
  sower ca revoke $(openssl x509 -in node.pem -noout -serial | cut -d= -f2)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			reason, _ := cmd.Flags().GetString("reason")
			body, _ := json.Marshal(map[string]string{"serial": args[0], "reason": reason})
			_, out, err := c.do(cmd.Context(), http.MethodPost, c.url("v1", "ca", "revocations"), bytes.NewReader(body), "application/json")
			if err != nil {
				return err
			}
			var resp struct{ Revocation struct{ Serial string } }
			_ = json.Unmarshal(out, &resp)
			fmt.Fprintf(cmd.OutOrStdout(), "certificate %s revoked\n", resp.Revocation.Serial)
			return nil
		},
	}
	clientFlags(cmd.Flags())
	cmd.Flags().String("reason", "", "why, for the audit trail")
	return cmd
}

func newCARevocationsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revocations",
		Short: "List revoked certificate serials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			_, out, err := c.do(cmd.Context(), http.MethodGet, c.url("v1", "ca", "revocations"), nil, "")
			if err != nil {
				return err
			}
			var resp struct {
				Revocations []struct{ Serial, RevokedAt, RevokedBy, Reason string }
			}
			if err := json.Unmarshal(out, &resp); err != nil {
				return err
			}
			for _, r := range resp.Revocations {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\t%s\n", r.Serial, r.RevokedAt, r.RevokedBy, r.Reason)
			}
			return nil
		},
	}
	clientFlags(cmd.Flags())
	return cmd
}
