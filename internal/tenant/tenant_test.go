package tenant

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `
resolve: [host, "header:x-tenant", "cookie:tenant", path]
default: shared
tenants:
  shared: {}
  news:
    hosts: [news.example, "*.news.example"]
    ids: [news]
    min: 4
    max: 12
  tickets:
    hosts: [tickets.example]
    ids: [tickets]
    paths: [/tickets/]
  whale:
    paths: [/whale, /whale/big]
    labels: {hardware: dedicated}
    pin: [n1]
    exclude: [n4]
    max: 1
    min: 1
  deep:
    paths: [/whale/deep]
`

func mustParse(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestResolve(t *testing.T) {
	r := NewResolver(mustParse(t, sample))
	tests := []struct {
		name   string
		host   string
		path   string
		header map[string]string
		want   string
	}{
		{name: "host exact", host: "news.example", path: "/a", want: "news"},
		{name: "host with port and case", host: "NEWS.Example:8080", path: "/a", want: "news"},
		{name: "host trailing dot", host: "news.example.", path: "/a", want: "news"},
		{name: "host wildcard", host: "m.eu.news.example", path: "/", want: "news"},
		{name: "wildcard is not the apex of another", host: "xnews.example", path: "/", want: "shared"},
		{name: "host beats header", host: "tickets.example", header: map[string]string{"X-Tenant": "news"}, want: "tickets"},
		{name: "header", host: "other.example", header: map[string]string{"X-Tenant": "news"}, want: "news"},
		{name: "header unknown value falls through to cookie", host: "other.example",
			header: map[string]string{"X-Tenant": "nope", "Cookie": "a=1; tenant=tickets"}, want: "tickets"},
		{name: "cookie quoted", host: "o", header: map[string]string{"Cookie": `tenant="news"`}, want: "news"},
		{name: "cookie of another name", host: "o", header: map[string]string{"Cookie": "xtenant=news"}, want: "shared"},
		{name: "header beats path", host: "o", path: "/whale/x", header: map[string]string{"X-Tenant": "tickets"}, want: "tickets"},
		{name: "path prefix", host: "o", path: "/whale/x", want: "whale"},
		{name: "path itself", host: "o", path: "/whale", want: "whale"},
		{name: "path with trailing slash config", host: "o", path: "/tickets", want: "tickets"},
		{name: "path longest prefix", host: "o", path: "/whale/deep/1", want: "deep"},
		{name: "path segment boundary", host: "o", path: "/whalesong", want: "shared"},
		{name: "nothing: default", host: "o", path: "/", want: "shared"},
		{name: "ipv6 host", host: "[::1]:80", path: "/", want: "shared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/"
			}
			req := httptest.NewRequest("GET", "http://x"+path, nil)
			req.Host = tt.host
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if got := r.Resolve(req); got != tt.want {
				t.Errorf("Resolve = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResolveOrderIsConfigured(t *testing.T) {
	c := mustParse(t, `
resolve: [path, host]
tenants:
  a: {hosts: [a.example]}
  b: {paths: [/b]}
`)
	req := httptest.NewRequest("GET", "http://a.example/b/1", nil)
	if got := NewResolver(c).Resolve(req); got != "b" {
		t.Errorf("path first: got %q, want b", got)
	}
	c.Resolve = []Source{{Kind: SourceHost}, {Kind: SourcePath}}
	if got := NewResolver(c).Resolve(req); got != "a" {
		t.Errorf("host first: got %q, want a", got)
	}
}

func TestResolveWithoutConfig(t *testing.T) {
	req := httptest.NewRequest("GET", "http://news.example/", nil)
	if got := NewResolver(nil).Resolve(req); got != "" {
		t.Errorf("got %q, want the default tenant", got)
	}
}

func TestResolveDoesNotAllocate(t *testing.T) {
	r := NewResolver(mustParse(t, sample))
	req := httptest.NewRequest("GET", "http://o/whale/deep/1", nil)
	req.Header.Set("Cookie", "a=1; b=2")
	req.Header.Set("X-Tenant", "zzz")
	if n := testing.AllocsPerRun(100, func() { r.Resolve(req) }); n != 0 {
		t.Errorf("Resolve allocates %v times per call", n)
	}
}

func TestParse(t *testing.T) {
	c := mustParse(t, sample)
	if got := c.Tenants["news"].MinSize(); got != 4 {
		t.Errorf("news min = %d, want 4", got)
	}
	if got := c.Tenants["tickets"].MinSize(); got != DefaultMin {
		t.Errorf("tickets min = %d, want the default %d", got, DefaultMin)
	}
	if _, ok := c.Tenants["tickets"].MaxSize(); ok {
		t.Error("tickets has a max, want none")
	}
	w := c.Tenants["whale"]
	if w.Name != "whale" || w.Labels["hardware"] != "dedicated" || w.Pin[0] != "n1" || w.Exclude[0] != "n4" {
		t.Errorf("whale = %+v", w)
	}
	if c.Resolve[1] != (Source{Kind: SourceHeader, Name: "X-Tenant"}) {
		t.Errorf("header source = %+v, want the canonical name", c.Resolve[1])
	}
	empty := mustParse(t, "")
	if len(empty.Tenants) != 0 {
		t.Errorf("empty file: %d tenants", len(empty.Tenants))
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown field", "tenants: {a: {hots: [x]}}", "hots"},
		{"unknown source", "resolve: [query]", "unknown source"},
		{"header without name", "resolve: [header]", "needs a name"},
		{"host with name", "resolve: [host:x]", "takes no name"},
		{"source twice", "resolve: [host, host]", "twice"},
		{"min zero", "tenants: {a: {min: 0}}", "at least 1"},
		{"max below min", "tenants: {a: {min: 3, max: 2}}", "below min"},
		{"max zero", "tenants: {a: {min: 1, max: 0}}", "below min"},
		{"bad name", "tenants: {\"a/b\": {}}", "only letters"},
		{"host on two tenants", "tenants: {a: {hosts: [x.example]}, b: {hosts: [X.example]}}", "both"},
		{"id on two tenants", "resolve: [\"header:T\"]\ntenants: {a: {ids: [x]}, b: {ids: [x]}}", "both"},
		{"path on two tenants", "resolve: [path]\ntenants: {a: {paths: [/x]}, b: {paths: [/x/]}}", "both"},
		{"path root", "resolve: [path]\ntenants: {a: {paths: [/]}}", "not / itself"},
		{"path relative", "resolve: [path]\ntenants: {a: {paths: [x]}}", "starting with /"},
		{"host with port", "tenants: {a: {hosts: [\"x:80\"]}}", "without port"},
		{"bad wildcard", "tenants: {a: {hosts: [\"*x.example\"]}}", "without port"},
		{"ids without source", "tenants: {a: {ids: [x]}}", "no header or cookie"},
		{"paths without source", "resolve: [host]\ntenants: {a: {paths: [/x]}}", "no path"},
		{"pinned and excluded", "tenants: {a: {pin: [n1], exclude: [n1]}}", "both pinned and excluded"},
		{"pins over max", "tenants: {a: {min: 1, max: 1, pin: [n1, n2]}}", "exceed max"},
		{"default undeclared", "default: x", "not declared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(p, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || len(c.Tenants) != 5 {
		t.Fatalf("Load = %v, %v", c, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}
