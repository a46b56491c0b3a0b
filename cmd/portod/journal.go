package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// journalHandler sends records to journald natively, each attribute as a
// field (container="a/b" becomes CONTAINER=a/b), so `journalctl
// CONTAINER=a/b` finds what porto logged about one container.
type journalHandler struct {
	level slog.Leveler
	attrs []slog.Attr
	group string
}

func newJournalHandler(level slog.Leveler) slog.Handler { return &journalHandler{level: level} }

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "portod"}
	var text strings.Builder
	text.WriteString(r.Message)
	add := func(a slog.Attr) {
		k := journalField(h.group, a.Key)
		v := a.Value.Resolve().String()
		if k != "" {
			vars[k] = v
		}
		fmt.Fprintf(&text, " %s=%q", a.Key, v)
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	return journal.Send(text.String(), journalPriority(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *journalHandler) WithGroup(g string) slog.Handler {
	n := *h
	n.group = journalField(h.group, g)
	return &n
}

// journalField makes a journal field name: upper case letters, digits and
// underscores, not starting with an underscore.
func journalField(group, key string) string {
	if group != "" {
		key = group + "_" + key
	}
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		if (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	f := strings.TrimLeft(b.String(), "_")
	if f == "" || f[0] >= '0' && f[0] <= '9' || f == "MESSAGE" || f == "PRIORITY" {
		return ""
	}
	return f
}

func journalPriority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}
