package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapToSlog returns a zap logger whose Warn-and-above entries go to lg, so
// that etcd's own lines land in sower's structured log with the same format.
// Info and debug lines from etcd are dropped: they describe raft internals an
// operator of sower does not act on.
//
// Two kinds of line are dropped because they are expected and carry nothing
// to act on: the warnings etcd prints for how sower configures it (one port
// for gRPC and HTTP, the unused simple auth token), and, once the member is
// closing, the errors of its listeners being closed.
func newZapToSlog(lg *slog.Logger, closing *atomic.Bool) *zap.Logger {
	if lg == nil {
		return zap.NewNop()
	}
	return zap.New(&slogCore{lg: lg.With("component", "etcd"), closing: closing})
}

var ignoredEtcdWarnings = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

type slogCore struct {
	lg      *slog.Logger
	closing *atomic.Bool
	fields  []zapcore.Field
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	return &slogCore{lg: c.lg, closing: c.closing, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	if ignoredEtcdWarnings[e.Message] {
		return nil
	}
	if c.closing.Load() {
		if msg, _ := enc.Fields["error"].(string); strings.Contains(msg, "closed") {
			return nil
		}
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	level := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	c.lg.LogAttrs(context.Background(), level, e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }
