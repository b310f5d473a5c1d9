package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/sowerproject/sower/audit"
	"github.com/sowerproject/sower/server/etcdstore"
)

// openAuditExport opens Config.AuditExport: "-" is standard output, any
// other value a file appended to (created 0600: the trail names who read
// what). It returns nil, nil when the export is off.
func openAuditExport(dest string) (io.WriteCloser, error) {
	switch dest {
	case "":
		return nil, nil
	case "-":
		return nopCloser{os.Stdout}, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: audit export: %w; give a writable file or - for standard output", err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// exportAudit writes the events of the trail, whichever node recorded them
// (Followers' included, as the quorum stores them), to w as one JSON line
// each in slog's JSON handler format: "time" is the event's time, "level"
// INFO, "msg" "audit", then the event's fields. With a cursor file (an
// export to a file) it keeps its place there, the etcd revision of the last
// event written: a new export starts with every event stored, a restarted
// one with what was stored since, so no event is missed; one written just
// before a crash may be written again (at least once: an event's "id" is
// unique). Standard output has no cursor: it gets the events stored from
// the start of the node on.
func exportAudit(ctx context.Context, trail *etcdstore.AuditTrail, w io.Writer, cursor string) error {
	h := slog.NewJSONHandler(w, nil)
	if cursor == "" {
		return trail.Follow(ctx, etcdstore.Query{}, false, func(e audit.Event) error {
			return h.Handle(ctx, auditRecord(e))
		})
	}
	after, err := readCursor(cursor)
	if err != nil {
		return err
	}
	return trail.FollowAfter(ctx, etcdstore.Query{}, after, func(e audit.Event, rev int64) error {
		if err := h.Handle(ctx, auditRecord(e)); err != nil {
			return err
		}
		if rev == after {
			return nil
		}
		after = rev
		return os.WriteFile(cursor, []byte(strconv.FormatInt(rev, 10)+"\n"), 0o600)
	})
}

// auditCursor is where an export to path keeps its place.
func auditCursor(path string) string {
	if path == "" || path == "-" {
		return ""
	}
	return path + ".rev"
}

func readCursor(path string) (int64, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("server: audit export cursor: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("server: audit export cursor %s holds %q, not a revision; delete it to export the whole trail again", path, raw)
	}
	return n, nil
}

// auditRecord is e as a slog record; empty fields are left out.
func auditRecord(e audit.Event) slog.Record {
	r := slog.NewRecord(e.At, slog.LevelInfo, "audit", 0)
	r.AddAttrs(slog.String("id", e.ID), slog.String("node", e.Node), slog.String("kind", string(e.Kind)),
		slog.String("action", e.Action), slog.String("outcome", e.Outcome))
	for _, a := range []struct{ k, v string }{{"identity", e.Identity}, {"resource", e.Resource}, {"source", e.Source},
		{"authenticator", e.Authenticator}, {"reason", e.Reason}} {
		if a.v != "" {
			r.AddAttrs(slog.String(a.k, a.v))
		}
	}
	if e.Version != 0 {
		r.AddAttrs(slog.Int("version", e.Version))
	}
	if e.Count > 1 {
		r.AddAttrs(slog.Int64("count", e.Count), slog.Time("last", e.Last))
	}
	return r
}
