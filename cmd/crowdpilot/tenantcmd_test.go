package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRunTenantCLI(t *testing.T) {
	var puts []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/tenants":
			io.WriteString(w, `{"tenants":[{"name":"news","size":6,"min":3,"max":12,"nodes":["n1","n2"]},{"name":"whale","size":2,"min":2,"labels":{"hw":"gpu"},"fallback":true,"nodes":["n1"]}]}`)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/tenants/news":
			io.WriteString(w, `{"name":"news","size":6}`)
		case r.Method == http.MethodPut && r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"missing or wrong bearer token"}`)
		case r.Method == http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			var m map[string]any
			json.Unmarshal(b, &m)
			puts = append(puts, m)
			if m["size"] == 99.0 {
				w.WriteHeader(400)
				io.WriteString(w, `{"error":"size 99 is above max 12"}`)
				return
			}
			io.WriteString(w, `{"name":"news","size":9,"hold":true,"min":3,"max":12}`)
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"error":"not declared"}`)
		}
	}))
	defer srv.Close()
	t.Setenv("CROWDPILOT_ADMIN", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("CROWDPILOT_ADMIN_TOKEN", "tok")
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
		put      string // JSON of the PUT body sent, if any
	}{
		{args: nil, out: "whale   2     2    -    false  hw=gpu (no node: all)  n1"},
		{args: []string{"news"}, out: `"size": 6`},
		{args: []string{"news", "--size", "9", "--hold", "--reason", "sale"}, out: "tenant news: size 9 (held), min 3, max 12",
			put: `{"hold":true,"reason":"sale","size":9}`},
		{args: []string{"news", "--no-hold", "--reset", "size,labels"}, put: `{"hold":false,"labels":null,"size":null}`},
		{args: []string{"news", "--labels", "", "--pin", "n1, n2", "--exclude", ""}, put: `{"exclude":[],"labels":{},"pin":["n1","n2"]}`},
		{args: []string{"news", "--size", "99"}, code: 2, err: "(400): size 99 is above max 12", put: `{"size":99}`},
		{args: []string{"news", "--size", "1", "--admin-token", "bad"}, code: 1, err: "(401)"},
		{args: []string{"--size", "3"}, code: 2, err: "need a tenant name"},
		{args: []string{"news", "--hold", "--no-hold"}, code: 2, err: "together"},
		{args: []string{"news", "--reset", "zone"}, code: 2, err: "want size"},
		{args: []string{"news", "--size", "3", "--reset", "size"}, code: 2, err: "together"},
		{args: []string{"news", "--labels", "x"}, code: 2, err: "--labels"},
		{args: []string{"a/b"}, code: 2, err: "only letters"},
		{args: []string{"news", "extra"}, code: 2, err: "unexpected argument"},
		{args: []string{"zzz"}, code: 1, err: "404"},
		{args: []string{"-h"}, out: "Exit status"},
	} {
		before := len(puts)
		var out, errb bytes.Buffer
		code := runTenant(context.Background(), tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%v: exit %d\nout: %s\nerr: %s\nwant exit %d, out with %q, err with %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
		var sent string
		if len(puts) > before {
			b, _ := json.Marshal(puts[len(puts)-1])
			sent = string(b)
		}
		if sent != tc.put {
			t.Errorf("%v: sent %s, want %s", tc.args, sent, tc.put)
		}
	}
}
