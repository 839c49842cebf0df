package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// testLogs keeps the most recent log records of a test cluster's nodes,
// bounded, and prints them if the test fails: a flaky failover or a stray
// origin fetch then explains itself in the CI output.
type testLogs struct {
	mu    sync.Mutex // guards lines, next, total
	lines []string
	next  int
	total int
}

const testLogLines = 400

func newTestLogs(t testing.TB) *testLogs {
	l := &testLogs{lines: make([]string, 0, testLogLines)}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		ordered := append(append([]string{}, l.lines[l.next:]...), l.lines[:l.next]...)
		t.Logf("last %d of %d node log records:\n%s", len(ordered), l.total, strings.Join(ordered, "\n"))
	})
	return l
}

func (l *testLogs) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if len(l.lines) < cap(l.lines) {
		l.lines = append(l.lines, s)
		return
	}
	l.lines[l.next] = s
	l.next = (l.next + 1) % len(l.lines)
}

// logger returns a debug-level logger for node id that records into l.
func (l *testLogs) logger(id string) *slog.Logger {
	return slog.New(&recordHandler{logs: l, attrs: "node=" + id})
}

type recordHandler struct {
	logs  *testLogs
	attrs string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %q", r.Time.Format("15:04:05.000"), r.Level, h.attrs, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.logs.add(b.String())
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	return &recordHandler{logs: h.logs, attrs: b.String()}
}

func (h *recordHandler) WithGroup(name string) slog.Handler {
	return &recordHandler{logs: h.logs, attrs: h.attrs + " " + name + ":"}
}
