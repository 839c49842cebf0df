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
	mu      sync.Mutex // guards lines, next, total, stopped, after
	lines   []string
	next    int
	total   int
	stopped bool // the test's cleanup began: later records are only counted
	after   int
}

const testLogLines = 1000

func newTestLogs(t testing.TB) *testLogs {
	l := &testLogs{lines: make([]string, 0, testLogLines)}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		ordered := append(append([]string{}, l.lines[l.next:]...), l.lines[:l.next]...)
		t.Logf("last %d of %d node log records before cleanup (%d more during cleanup, not shown):\n%s", len(ordered), l.total, l.after, strings.Join(ordered, "\n"))
	})
	return l
}

// stop keeps what the nodes log from now on out of the record: register
// it as a cleanup after the nodes' own, so that it runs before they shut
// down and the dump shows the test, not the shutdown.
func (l *testLogs) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

func (l *testLogs) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		l.after++
		return
	}
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
