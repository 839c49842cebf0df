package node

// Read-only admin views that show cache keys redact query values, unless
// the operator opened them (--admin-open-keys) or the caller has the token:
// sites put tokens in URLs, and the admin port is readable without one.

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// redactedValue replaces every query value in a key shown without the token.
const redactedValue = "REDACTED"

// keysView serves next as is to callers with the token (or everyone when
// AdminOpenKeys is set), and otherwise with the query values of every key in
// its JSON answer redacted.
func (n *Node) keysView(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.cfg.AdminOpenKeys || n.hasToken(r) || n.peerProvedView(w, r) {
			next(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}}
		next(rec, r)
		body := rec.body.Bytes()
		var v any
		if err := json.Unmarshal(body, &v); err == nil {
			if b, err := json.MarshalIndent(redactKeys(v), "", "  "); err == nil {
				body = append(b, '\n')
			}
		}
		for k, vv := range rec.header {
			w.Header()[k] = vv
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.code)
		w.Write(body)
	}
}

// peerProvedView reports whether r is another node's proxied view with a
// valid peer proof (a node that had the token from its caller).
func (n *Node) peerProvedView(w http.ResponseWriter, r *http.Request) bool {
	ok, _ := n.peerProved(w, r)
	return ok
}

// hasToken reports whether r carries the admin token.
func (n *Node) hasToken(r *http.Request) bool {
	want := "Bearer " + n.cfg.AdminToken
	return n.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) == 1
}

// redactKeys returns v with the query values of every string that looks
// like a cache key or URL ("…/path?name=value&…") replaced.
func redactKeys(v any) any {
	switch x := v.(type) {
	case string:
		return redactQuery(x)
	case []any:
		for i := range x {
			x[i] = redactKeys(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = redactKeys(x[k])
		}
	}
	return v
}

// redactQuery keeps the parameter names of s's query and drops the values.
func redactQuery(s string) string {
	q := strings.IndexByte(s, '?')
	if q < 0 || !strings.Contains(s[:q], "/") {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:q+1])
	for i, p := range strings.Split(s[q+1:], "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, _, hasEq := strings.Cut(p, "=")
		b.WriteString(name)
		if hasEq {
			b.WriteString("=" + redactedValue)
		}
	}
	return b.String()
}

// bufferedResponse holds a handler's answer for rewriting.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

// metricKey is a cache key as a metric label: query values redacted unless
// AdminOpenKeys, as the read-only views show it without the token.
func (n *Node) metricKey(key string) string {
	if n.cfg.AdminOpenKeys {
		return key
	}
	return redactQuery(key)
}
