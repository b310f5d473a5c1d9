package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "The Leader/Standby quorum: members, health, removal, promotion, Leader handoff",
		Long: `Inspect and change the Leader/Standby quorum. Any node answers members and
status; changes run on the Leader (a Standby's refusal names it, and these
commands retry there) and need update on the root policy.`,
	}
	cmd.AddCommand(newClusterMembersCommand(), newClusterStatusCommand(), newClusterRemoveCommand(),
		newClusterPromoteCommand(), newClusterMoveLeaderCommand(), newClusterFollowersCommand())
	return cmd
}

func newClusterMembersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the etcd members with role, health, raft index and lag",
		Example: `  sower cluster members
  sower cluster members --server https://10.0.0.12:8443 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp sowerv1.ListMembersResponse
			raw, err := clusterCall(cmd, http.MethodGet, nil, &resp, "v1", "cluster", "members")
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return printRaw(cmd.OutOrStdout(), raw)
			}
			return printMembers(cmd.OutOrStdout(), resp.GetMembers())
		},
	}
	clusterFlags(cmd)
	return cmd
}

func newClusterStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the quorum's Leader, fault tolerance and warnings",
		Example: `  sower cluster status
  sower cluster status --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st sowerv1.GetClusterStatusResponse
			raw, err := clusterCall(cmd, http.MethodGet, nil, &st, "v1", "cluster", "status")
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return printRaw(cmd.OutOrStdout(), raw)
			}
			w := cmd.OutOrStdout()
			leader := "none elected"
			if st.GetLeaderName() != "" {
				leader = st.GetLeaderName() + " (" + st.GetLeaderUrl() + ")"
			}
			fmt.Fprintf(w, "cluster:         %s\n", st.GetCluster())
			fmt.Fprintf(w, "leader:          %s\n", leader)
			fmt.Fprintf(w, "answered by:     %s (%s)\n", st.GetThisNode(), roleName(st.GetThisRole()))
			fmt.Fprintf(w, "failover ttl:    %ds\n", st.GetFailoverTtlSeconds())
			fmt.Fprintf(w, "voters:          %d (%d healthy), learners: %d\n", st.GetVoters(), st.GetHealthyVoters(), st.GetLearners())
			fmt.Fprintf(w, "quorum:          %d (writes possible: %s)\n", st.GetQuorum(), yesNo(st.GetHasQuorum()))
			fmt.Fprintf(w, "fault tolerance: %d by design, %d more failure(s) tolerated now\n", st.GetFaultTolerance(), max(st.GetRemainingFailures(), 0))
			if len(st.GetWarnings()) == 0 {
				fmt.Fprintln(w, "warnings:        none")
			} else {
				fmt.Fprintln(w, "warnings:")
				for _, s := range st.GetWarnings() {
					fmt.Fprintf(w, "  - %s\n", s)
				}
			}
			fmt.Fprintln(w)
			return printMembers(w, st.GetMembers())
		},
	}
	clusterFlags(cmd)
	return cmd
}

func newClusterRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a member from the quorum (refused if it would lose quorum, unless --force)",
		Long: `Remove a member from the quorum. It is refused when the voters left would not
hold a reachable quorum, unless --force, and for the Leader itself (hand the
role over first with move-leader). A removed node stops; to bring it back,
issue it a new Standby seed and start it with --seed --reenroll --yes.`,
		Example: `  sower cluster remove standby-2
  sower cluster remove standby-2 --force`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			force, _ := cmd.Flags().GetBool("force")
			path := []string{"v1", "cluster", "members", args[0]}
			if force {
				path[len(path)-1] += "?force=true"
			}
			var resp sowerv1.RemoveMemberResponse
			if _, err := clusterCall(cmd, http.MethodDelete, nil, &resp, path...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s (member %s)\n", args[0], resp.GetId())
			return nil
		},
	}
	clusterFlags(cmd)
	cmd.Flags().Bool("force", false, "remove even when the voters left would not hold a reachable quorum")
	return cmd
}

func newClusterPromoteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "promote NAME",
		Short:   "Promote a learner to voter now (the Leader does this by itself once it has caught up)",
		Example: `  sower cluster promote standby-3`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp sowerv1.PromoteMemberResponse
			if _, err := clusterCall(cmd, http.MethodPost, &sowerv1.PromoteMemberRequest{}, &resp, "v1", "cluster", "members", args[0]+":promote"); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "promoted %s (member %s)\n", args[0], resp.GetId())
			return nil
		},
	}
	clusterFlags(cmd)
	return cmd
}

func newClusterMoveLeaderCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "move-leader NAME",
		Short:   "Hand the Leader role to a named Standby and wait until it has taken over",
		Example: `  sower cluster move-leader standby-1`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp sowerv1.MoveLeaderResponse
			if _, err := clusterCall(cmd, http.MethodPost, &sowerv1.MoveLeaderRequest{To: args[0]}, &resp, "v1", "cluster", "leader:move"); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the Leader is now %s (%s)\n", resp.GetLeaderName(), resp.GetLeaderUrl())
			return nil
		},
	}
	clusterFlags(cmd)
	return cmd
}

func clusterFlags(cmd *cobra.Command) {
	clientFlags(cmd.Flags())
	cmd.Flags().StringP("output", "o", "text", "output format: text or json")
}

func asJSON(cmd *cobra.Command) bool {
	o, _ := cmd.Flags().GetString("output")
	return o == "json"
}

// clusterCall sends one request and decodes the answer into out. A change
// refused by a Standby is sent once more to the Leader it names.
func clusterCall(cmd *cobra.Command, method string, body proto.Message, out proto.Message, segments ...string) ([]byte, error) {
	if o, _ := cmd.Flags().GetString("output"); o != "text" && o != "json" {
		return nil, &usageError{fmt.Errorf("output %q: use text or json", o)}
	}
	c, err := newAPIClient(cmd)
	if err != nil {
		return nil, err
	}
	var payload []byte
	if body != nil {
		if payload, err = protojson.Marshal(body); err != nil {
			return nil, err
		}
	}
	send := func(c *apiClient) (int, []byte, error) {
		var r io.Reader
		if payload != nil {
			r = strings.NewReader(string(payload))
		}
		// The last segment may carry a query (remove --force).
		last := segments[len(segments)-1]
		query := ""
		if i := strings.IndexByte(last, '?'); i >= 0 {
			last, query = last[:i], last[i:]
		}
		u := c.url(append(append([]string(nil), segments[:len(segments)-1]...), last)...) + query
		// The gateway's custom verbs (":promote", ":move") must stay literal.
		u = strings.ReplaceAll(u, "%3A", ":")
		return c.do(context.Background(), method, u, r, "application/json")
	}
	code, raw, err := send(c)
	if err != nil && method != http.MethodGet {
		if leader := notLeaderURL(raw); leader != "" && code == http.StatusBadRequest {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s is not the Leader; sending to the Leader at %s\n", c.base.Host, leader)
			lc, lerr := c.withBase(cmd, leader)
			if lerr != nil {
				return nil, lerr
			}
			_, raw, err = send(lc)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("unreadable answer from %s: %w", c.base.Host, err)
	}
	return raw, nil
}

// notLeaderURL reads the Leader's URL from a gateway error naming it.
func notLeaderURL(body []byte) string {
	var e struct {
		Details []struct {
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	for _, d := range e.Details {
		if d.Reason == "NOT_LEADER" {
			return d.Metadata["leader_url"]
		}
	}
	return ""
}

// withBase is the same client (login, token) pointed at another node.
func (c *apiClient) withBase(cmd *cobra.Command, base string) (*apiClient, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("the Leader's URL %q is not usable", base)
	}
	tlsCfg, err := clientTLS(cmd, u)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	n := *c
	n.base, n.http = u, &http.Client{Timeout: c.http.Timeout, Transport: tr}
	return &n, nil
}

func printMembers(w io.Writer, ms []*sowerv1.Member) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tROLE\tHEALTHY\tRAFT INDEX\tLAG\tRAFT LEADER\tPEER URL")
	for _, m := range ms {
		name := m.GetName()
		if name == "" {
			name = "(not started)"
		}
		healthy := yesNo(m.GetHealthy())
		if !m.GetHealthy() && m.GetError() != "" {
			healthy = "no: " + m.GetError()
		}
		raftLeader := ""
		if m.GetRaftLeader() {
			raftLeader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", name, m.GetId(), roleName(m.GetRole()), healthy,
			m.GetRaftIndex(), m.GetLag(), raftLeader, strings.Join(m.GetPeerUrls(), ","))
	}
	return tw.Flush()
}

func roleName(r sowerv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printRaw(w io.Writer, raw []byte) error {
	_, err := fmt.Fprintln(w, strings.TrimSpace(string(raw)))
	return err
}

// exactArgs is cobra.ExactArgs as a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
