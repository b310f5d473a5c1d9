package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// auditMaxPage is the server's page limit (etcdstore.TrailMaxPage).
const auditMaxPage = 1000

// auditMaxLine bounds one streamed event line of --follow.
const auditMaxLine = 1 << 20

// auditEvent is sower.v1.AuditEvent as the gateway writes it.
type auditEvent struct {
	ID            string `json:"id"`
	At            string `json:"at"`
	Node          string `json:"node"`
	Kind          string `json:"kind"`
	Action        string `json:"action"`
	Outcome       string `json:"outcome"`
	Identity      string `json:"identity,omitempty"`
	Resource      string `json:"resource,omitempty"`
	Version       int    `json:"version,omitempty"`
	Source        string `json:"source,omitempty"`
	Authenticator string `json:"authenticator,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Count         string `json:"count,omitempty"`
	Last          string `json:"last,omitempty"`
}

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query the audit trail: who authenticated, who read which secret, which seeds were issued",
		Long: `Query the cluster's audit trail (served by the Leader and Standbys). The
login needs read on webservice:sower/audit. Events are listed newest first;
--follow instead prints new events as they are stored, until interrupted.
--since and --until take an RFC 3339 time or a duration meaning "that long
ago" (1h, 30m, 72h).`,
		Example: `  # who read variable db/password in the last day
  sower audit --kind secret-read --resource acme:variable:db/password --since 24h
  # which seeds did host follower-0 fetch
  sower audit --kind seed --identity acme:host:follower-0
  # watch failed logins
  sower audit --kind authn --outcome failure --follow`,
		Args: cobra.NoArgs,
		RunE: runAudit,
	}
	clientFlags(cmd.Flags())
	f := cmd.Flags()
	f.String("kind", "", "authn, secret-read, seed, membership or data-key")
	f.String("action", "", "what was done: read, batch-read, issue, refuse, revoke, login...")
	f.String("identity", "", "who acted, a full role id (acme:host:app)")
	f.String("resource", "", "what was acted on (acme:variable:db/password, a seed id, a member name)")
	f.String("node", "", "the node the event happened on")
	f.String("outcome", "", "success or failure")
	f.String("since", "", "events at or after this time: RFC 3339 or a duration ago (24h)")
	f.String("until", "", "events before this time: RFC 3339 or a duration ago")
	f.Int("limit", 100, "print at most this many events; 0 prints every matching event")
	f.Bool("json", false, "print one JSON object per event per line")
	f.Bool("follow", false, "print new events as they are stored, until interrupted")
	return cmd
}

// auditTime parses an RFC 3339 time or a duration ago.
func auditTime(name, v string, now time.Time) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return "", &usageError{fmt.Errorf("%s %q: give an RFC 3339 time (2026-01-02T15:04:05Z) or a positive duration ago (1h, 30m)", name, v)}
	}
	return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
}

func runAudit(cmd *cobra.Command, _ []string) error {
	f := cmd.Flags()
	q := url.Values{}
	for _, k := range []string{"kind", "action", "identity", "resource", "node", "outcome"} {
		if v, _ := f.GetString(k); v != "" {
			q.Set("filter."+k, v)
		}
	}
	now := time.Now()
	for _, k := range []string{"since", "until"} {
		v, _ := f.GetString(k)
		t, err := auditTime(k, v, now)
		if err != nil {
			return err
		}
		if t != "" {
			q.Set("filter."+k, t)
		}
	}
	limit, _ := f.GetInt("limit")
	if limit < 0 {
		return &usageError{fmt.Errorf("limit %d: give 0 (every event) or more", limit)}
	}
	asJSON, _ := f.GetBool("json")
	follow, _ := f.GetBool("follow")
	c, err := newAPIClient(cmd)
	if err != nil {
		return err
	}
	out := newAuditPrinter(cmd.OutOrStdout(), asJSON, follow)
	if follow {
		return followAudit(cmd, c, q, out)
	}
	printed := 0
	for {
		size := auditMaxPage
		if limit > 0 && limit-printed < size {
			size = limit - printed
		}
		q.Set("page_size", strconv.Itoa(size))
		_, body, err := c.do(cmd.Context(), http.MethodGet, c.url("v1", "audit", "events")+"?"+q.Encode(), nil, "")
		if err != nil {
			return err
		}
		var page struct {
			Events        []auditEvent `json:"events"`
			NextPageToken string       `json:"nextPageToken"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("audit events: %w", err)
		}
		for _, e := range page.Events {
			if err := out.print(e); err != nil {
				return err
			}
		}
		printed += len(page.Events)
		if page.NextPageToken == "" || (limit > 0 && printed >= limit) {
			break
		}
		q.Set("page_token", page.NextPageToken)
	}
	return out.flush()
}

// followAudit streams GET /v1/audit/events:watch: the gateway writes one
// JSON object per line, {"result": event} or {"error": status}.
func followAudit(cmd *cobra.Command, c *apiClient, q url.Values, out *auditPrinter) error {
	ctx := cmd.Context()
	if err := c.authenticate(ctx); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("v1", "audit", "events:watch")+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.token)
	hc := *c.http
	hc.Timeout = 0 // the stream lasts until interrupted
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("GET %s: %s", req.URL.Path, serverMessage(resp.Status, body))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), auditMaxLine)
	for sc.Scan() {
		var msg struct {
			Result *struct {
				Event auditEvent `json:"event"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			return fmt.Errorf("audit stream: %w", err)
		}
		if msg.Error != nil {
			return fmt.Errorf("audit stream: %s", msg.Error.Message)
		}
		if msg.Result != nil {
			if err := out.print(msg.Result.Event); err != nil {
				return err
			}
			if err := out.flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("audit stream: %w", err)
	}
	return nil
}

type auditPrinter struct {
	w      io.Writer
	tw     *tabwriter.Writer
	asJSON bool
	header bool
}

func newAuditPrinter(w io.Writer, asJSON, follow bool) *auditPrinter {
	p := &auditPrinter{w: w, asJSON: asJSON}
	if !asJSON {
		p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if follow {
			// Rows are flushed one by one: fixed columns would need the
			// widths of events not yet seen.
			p.tw = tabwriter.NewWriter(w, 0, 8, 1, '\t', 0)
		}
	}
	return p
}

func (p *auditPrinter) print(e auditEvent) error {
	if p.asJSON {
		raw, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", raw)
		return err
	}
	if !p.header {
		p.header = true
		fmt.Fprintln(p.tw, "TIME\tNODE\tKIND\tACTION\tOUTCOME\tIDENTITY\tRESOURCE\tVERSION\tSOURCE")
	}
	v := ""
	if e.Version != 0 {
		v = strconv.Itoa(e.Version)
	}
	_, err := fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At, e.Node, e.Kind, e.Action, e.Outcome,
		dash(e.Identity), dash(e.Resource), dash(v), dash(e.Source))
	return err
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func (p *auditPrinter) flush() error {
	if p.tw == nil {
		return nil
	}
	return p.tw.Flush()
}
