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

func TestRunReplicasCLI(t *testing.T) {
	var sent []string // "METHOD body-or-query"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		b, _ := io.ReadAll(r.Body)
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/objects":
			if r.Header.Get("Authorization") != "Bearer tok" {
				t.Errorf("list without the token: keys would be redacted")
			}
			io.WriteString(w, `{"objects":[{"key":"o/live/a","pin":2,"reason":"sale","updated":"2026-12-01T20:00:00Z"},{"key":"o/live/b","cap":0,"until":"2026-12-01T23:00:00Z"}],"max":1000}`)
			return
		case r.URL.Path != "/api/v1/objects":
			w.WriteHeader(404)
			io.WriteString(w, `{"error":"no such endpoint"}`)
			return
		case r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"missing or wrong bearer token"}`)
			return
		case r.Method == http.MethodDelete:
			sent = append(sent, "DELETE "+r.URL.Query().Get("key"))
			io.WriteString(w, `{"key":"o/live/a","cleared":true}`)
			return
		}
		sent = append(sent, r.Method+" "+string(b))
		var m map[string]any
		json.Unmarshal(b, &m)
		switch {
		case m["pin"] == 9.0:
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"pin 9 is above --max-replicas 8 less the owner: at most 7 leased replicas"}`)
		case m["key"] == "/full":
			w.WriteHeader(409)
			io.WriteString(w, `{"error":"the cluster holds its most object settings"}`)
		case m["cap"] != nil:
			io.WriteString(w, `{"key":"o/live/a","pin":2,"cap":1}`)
		default:
			io.WriteString(w, `{"key":"o/live/a","pin":3}`)
		}
	}))
	defer srv.Close()
	t.Setenv("CROWDPILOT_ADMIN", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("CROWDPILOT_ADMIN_TOKEN", "tok")
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
		sent     string // the request sent, if any
	}{
		{args: nil, out: "o/live/a  2    -    -                     2026-12-01T20:00:00Z  sale"},
		{args: nil, out: "o/live/b  -    0    2026-12-01T23:00:00Z  -"},
		{args: []string{"list"}, out: "2 of at most 1000 settings"},
		{args: []string{"pin", "/live/a", "3", "--reason", "kick-off"}, out: "o/live/a: pinned at 3 leased replicas",
			sent: `PUT {"key":"/live/a","pin":3,"reason":"kick-off"}`},
		{args: []string{"cap", "/live/a?x=1&y=2", "1"}, out: "o/live/a: pinned at 2, capped at 1 leased replicas",
			sent: `PUT {"cap":1,"key":"/live/a?x=1\u0026y=2"}`},
		{args: []string{"clear", "/live/a?x=1&y=2"}, out: "o/live/a: no pin or cap", sent: "DELETE /live/a?x=1&y=2"},
		{args: []string{"pin", "/live/a", "9"}, code: 2, err: "(400): pin 9 is above --max-replicas 8", sent: `PUT {"key":"/live/a","pin":9}`},
		{args: []string{"pin", "/full", "1"}, code: 1, err: "(409)", sent: `PUT {"key":"/full","pin":1}`},
		{args: []string{"pin", "/live/a", "1", "--admin-token", "bad"}, code: 1, err: "(401)"},
		{args: []string{"pin", "/live/a", "-1"}, code: 2, err: `N "-1": want a whole number >= 0`},
		{args: []string{"cap", "/live/a", "two"}, code: 2, err: `N "two"`},
		{args: []string{"pin", "/live/a"}, code: 2, err: "pin needs KEY and N"},
		{args: []string{"clear"}, code: 2, err: "clear needs KEY"},
		{args: []string{"list", "x"}, code: 2, err: "list takes none"},
		{args: []string{"unpin", "/live/a"}, code: 2, err: `unknown action "unpin"`},
		{args: []string{"clear", "/live/a", "--reason", "x"}, code: 2, err: "--reason goes with pin or cap"},
		{args: []string{"pin", "/live/a", "3", "--for", "3h"}, out: "o/live/a: pinned at 3", sent: `PUT {"for":"3h0m0s","key":"/live/a","pin":3}`},
		{args: []string{"pin", "/live/a", "3", "--for", "0"}, out: "o/live/a: pinned at 3", sent: `PUT {"for":null,"key":"/live/a","pin":3}`},
		{args: []string{"pin", "/live/a", "3", "--for", "-1h"}, code: 2, err: "--for -1h0m0s: want a duration >= 0"},
		{args: []string{"pin", "/live/a", "3", "--for", "soon"}, code: 2, err: "for"},
		{args: []string{"clear", "/live/a", "--for", "1h"}, code: 2, err: "--for goes with pin or cap"},
		{args: []string{"pin", "/live/a", "1", "extra"}, code: 2, err: "unexpected argument"},
		{args: []string{"-h"}, out: "Exit status"},
	} {
		before := len(sent)
		var out, errb bytes.Buffer
		code := runReplicas(context.Background(), tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%v: exit %d\nout: %s\nerr: %s\nwant exit %d, out with %q, err with %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
		got := ""
		if len(sent) > before {
			got = sent[len(sent)-1]
		}
		if got != tc.sent {
			t.Errorf("%v: sent %s, want %s", tc.args, got, tc.sent)
		}
	}
}
