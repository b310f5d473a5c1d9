package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sowerproject/sower/policy"
	"github.com/sowerproject/sower/policy/repo"
	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Load Conjur policy, or sync a policy repository",
		Long: `Load Conjur policy into a running node, or bring the node in line with a
policy repository kept in Git (see examples/policy-repo).`,
	}
	cmd.AddCommand(newPolicyLoadCommand(), newPolicySyncCommand())
	return cmd
}

func newPolicyLoadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load [--replace|--update] [--dry-run] POLICY_ID FILE",
		Short: "Load a policy file into a policy (append by default)",
		Long: `Load a policy file into a policy, as Conjur's "conjur policy load":

  (default)  append: add what the file declares, change nothing that exists
  --update   also update what this policy loaded before, apply !delete/!deny/!revoke
  --replace  also delete what this policy loaded before and the file no longer declares

The API keys of the users and hosts the load creates are printed once.
FILE "-" reads standard input.`,
		Example: `  sower policy load --account myorg root policy.yml
  sower policy load --account myorg --replace --dry-run conjur/seed-generation seed.yml`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			replace, _ := cmd.Flags().GetBool("replace")
			update, _ := cmd.Flags().GetBool("update")
			dryRun, _ := cmd.Flags().GetBool("dry-run")
			mode := sowerv1.LoadMode_LOAD_MODE_APPEND
			switch {
			case replace && update:
				return &usageError{errors.New("choose one of --replace and --update")}
			case replace:
				mode = sowerv1.LoadMode_LOAD_MODE_REPLACE
			case update:
				mode = sowerv1.LoadMode_LOAD_MODE_UPDATE
			}
			text, name, err := readPolicyFile(cmd, args[1])
			if err != nil {
				return err
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			req := &sowerv1.LoadPolicyRequest{Account: c.account, Identifier: args[0], Mode: mode, Text: string(text), Filename: name, DryRun: dryRun}
			var resp sowerv1.LoadPolicyResponse
			if err := c.callJSON(cmd.Context(), c.url("v1", "policies", c.account, args[0]), req, &resp); err != nil {
				return err
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return printProto(cmd.OutOrStdout(), &resp)
			}
			w := cmd.OutOrStdout()
			verb := strings.TrimPrefix(strings.ToLower(mode.String()), "load_mode_")
			if dryRun {
				fmt.Fprintf(w, "Dry run: %s of %s into policy %s would change:\n", verb, name, args[0])
				printChanges(w, resp.GetChanges(), true)
				printCreatedRoles(w, resp.GetCreatedRoles(), true)
				return nil
			}
			fmt.Fprintf(w, "Loaded %s into policy %s (%s): version %d\n", name, args[0], verb, resp.GetVersion())
			printChanges(w, resp.GetChanges(), false)
			printCreatedRoles(w, resp.GetCreatedRoles(), false)
			return nil
		},
	}
	clientFlags(cmd.Flags())
	cmd.Flags().Bool("replace", false, "replace: delete what the policy held that the file no longer declares (Conjur's PUT)")
	cmd.Flags().Bool("update", false, "update: apply !delete, !deny and !revoke, update what exists (Conjur's PATCH)")
	cmd.Flags().Bool("dry-run", false, "print what the load would change, change nothing")
	cmd.Flags().Bool("json", false, "print the server's answer as JSON")
	return cmd
}

func readPolicyFile(cmd *cobra.Command, path string) ([]byte, string, error) {
	if path == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		return b, "stdin", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", &usageError{fmt.Errorf("policy file: %w", err)}
	}
	return b, filepath.Base(path), nil
}

func newPolicySyncCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync DIR",
		Short: "Bring the node's policies in line with a policy repository",
		Long: `Load a policy repository laid out as the policy tree (see
examples/policy-repo/README.md). For each folder: policies.yml, groups.yml,
layers.yml, hosts.yml, webservice.yml and body.yml with replace; then the
sub-folders; then variables.yml, grants.yml, permits.yml and the files of
grants/ and permits/ appended. The whole sync is one transaction on the
server: it applies completely or not at all, and a sync of a tree the server
already matches changes nothing and says so.`,
		Example: `  sower policy sync --account myorg --dry-run ./policies
  sower policy sync --account myorg ./policies`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dryRun, _ := cmd.Flags().GetBool("dry-run")
			st, err := os.Stat(args[0])
			if err != nil || !st.IsDir() {
				return &usageError{fmt.Errorf("sync %s: name the folder of a policy repository", args[0])}
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			loads, err := repo.Loads(os.DirFS(args[0]), c.account)
			if err != nil {
				return &usageError{err}
			}
			if len(loads) == 0 {
				return &usageError{fmt.Errorf("sync %s: the folder holds no policy files", args[0])}
			}
			req := &sowerv1.SyncPoliciesRequest{Account: c.account, DryRun: dryRun}
			for _, l := range loads {
				req.Loads = append(req.Loads, loadToProto(l))
			}
			var resp sowerv1.SyncPoliciesResponse
			if err := c.callJSON(cmd.Context(), c.url("v1", "policy-syncs", c.account), req, &resp); err != nil {
				return err
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return printProto(cmd.OutOrStdout(), &resp)
			}
			w := cmd.OutOrStdout()
			ch := resp.GetChanges()
			if ch.GetCreatedCount()+ch.GetUpdatedCount()+ch.GetDeletedCount() == 0 {
				fmt.Fprintf(w, "No changes: the server's policies match %s (%d loads).\n", args[0], len(loads))
				return nil
			}
			if dryRun {
				fmt.Fprintf(w, "Dry run: syncing %s (%d loads) would change:\n", args[0], len(loads))
				printChanges(w, ch, true)
				printCreatedRoles(w, resp.GetCreatedRoles(), true)
				return nil
			}
			fmt.Fprintf(w, "Synced %s (%d loads) in one transaction.\n", args[0], len(loads))
			printChanges(w, ch, false)
			if vs := resp.GetVersions(); len(vs) > 0 {
				fmt.Fprintln(w, "New policy versions:")
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				for _, v := range vs {
					fmt.Fprintf(tw, "  %s\t%d\n", v.GetPolicy(), v.GetVersion())
				}
				tw.Flush()
			}
			printCreatedRoles(w, resp.GetCreatedRoles(), false)
			return nil
		},
	}
	clientFlags(cmd.Flags())
	cmd.Flags().Bool("dry-run", false, "print what the sync would change, change nothing")
	cmd.Flags().Bool("json", false, "print the server's answer as JSON")
	return cmd
}

func loadToProto(l policy.LoadRequest) *sowerv1.PolicyLoad {
	mode := map[policy.Mode]sowerv1.LoadMode{
		policy.Append: sowerv1.LoadMode_LOAD_MODE_APPEND, policy.Update: sowerv1.LoadMode_LOAD_MODE_UPDATE,
		policy.Replace: sowerv1.LoadMode_LOAD_MODE_REPLACE,
	}[l.Mode]
	pl := &sowerv1.PolicyLoad{Identifier: l.Policy.Name, Mode: mode}
	files := l.Files
	if len(files) == 0 {
		files = []policy.File{{Name: l.Filename, Text: l.Text}}
	}
	for _, f := range files {
		pl.Files = append(pl.Files, &sowerv1.PolicyFile{Name: f.Name, Text: string(f.Text)})
	}
	return pl
}

// callJSON POSTs a request message to a /v1 path and decodes the answer.
func (c *apiClient) callJSON(ctx context.Context, u string, req, resp proto.Message) error {
	if ctx == nil {
		ctx = context.Background()
	}
	body, err := protojson.Marshal(req)
	if err != nil {
		return err
	}
	_, out, err := c.do(ctx, http.MethodPost, u, bytes.NewReader(body), "application/json")
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out, resp); err != nil {
		return fmt.Errorf("the server's answer does not decode: %w", err)
	}
	return nil
}

func printProto(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printChanges lists changed facts, one a line: "+" created, "~" updated,
// "-" deleted. Deletions are always listed in full, a dry run or not: a
// replace (and so every sync, which replaces root) deletes what the text
// lacks, and that must never pass unseen. Created and updated facts are
// summed up past maxListedFacts in a real load (--json lists them all).
func printChanges(w io.Writer, ch *sowerv1.PolicyChanges, dryRun bool) {
	would := ""
	if dryRun {
		would = "would be "
	}
	fmt.Fprintf(w, "  %d facts %screated, %d %supdated, %d %sdeleted\n",
		ch.GetCreatedCount(), would, ch.GetUpdatedCount(), would, ch.GetDeletedCount(), would)
	if n := len(ch.GetCreated()) + len(ch.GetUpdated()); n > maxListedFacts && !dryRun {
		fmt.Fprintf(w, "  (%d facts created or updated; --json lists them all)\n", n)
	} else {
		for _, f := range ch.GetCreated() {
			fmt.Fprintln(w, "  + "+describeFact(f))
		}
		for _, f := range ch.GetUpdated() {
			fmt.Fprintln(w, "  ~ "+describeFact(f))
		}
	}
	if len(ch.GetDeleted()) == 0 {
		return
	}
	fmt.Fprintf(w, "  %s (the text replaces what its policy held; these are not in it):\n", map[bool]string{true: "Would delete", false: "Deleted"}[dryRun])
	for _, f := range ch.GetDeleted() {
		fmt.Fprintln(w, "  - "+describeFact(f))
	}
}

// maxListedFacts is how many created and updated facts a real load lists
// one a line before it sums them up.
const maxListedFacts = 200

func describeFact(f *sowerv1.PolicyFact) string {
	switch f := f.GetFact().(type) {
	case *sowerv1.PolicyFact_Role:
		s := "role " + f.Role.GetId()
		if rt := f.Role.GetRestrictedTo(); len(rt) > 0 {
			s += " restricted to " + strings.Join(rt, ", ")
		}
		return s
	case *sowerv1.PolicyFact_Resource:
		return "resource " + f.Resource.GetId() + " owned by " + f.Resource.GetOwner()
	case *sowerv1.PolicyFact_Membership:
		m := f.Membership
		s := "member " + m.GetMember() + " of " + m.GetRole()
		switch {
		case m.GetOwnership():
			s += " (owner)"
		case m.GetAdminOption():
			s += " (admin)"
		}
		return s
	case *sowerv1.PolicyFact_Permission:
		p := f.Permission
		return "permit " + p.GetRole() + " " + p.GetPrivilege() + " on " + p.GetResource()
	case *sowerv1.PolicyFact_Annotation:
		a := f.Annotation
		return "annotation " + a.GetName() + "=" + fmt.Sprintf("%q", a.GetValue()) + " on " + a.GetResource()
	}
	return "?"
}

// printCreatedRoles prints the new roles and their API keys, which the
// server shows only once.
func printCreatedRoles(w io.Writer, roles []*sowerv1.CreatedRole, dryRun bool) {
	if len(roles) == 0 {
		return
	}
	sort.Slice(roles, func(i, j int) bool { return roles[i].GetId() < roles[j].GetId() })
	if dryRun {
		fmt.Fprintln(w, "Roles that would get an API key:")
		for _, r := range roles {
			fmt.Fprintf(w, "  %s\n", r.GetId())
		}
		return
	}
	fmt.Fprintln(w, "Created roles and their API keys (shown only now; store them safely):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, r := range roles {
		fmt.Fprintf(tw, "  %s\t%s\n", r.GetId(), r.GetApiKey())
	}
	tw.Flush()
}
