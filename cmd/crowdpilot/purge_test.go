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

func TestRunPurgeCLI(t *testing.T) {
	var got []map[string]any
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		got = append(got, m)
		auth = append(auth, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"missing or wrong bearer token"}`)
		case m["tag"] == "slow":
			w.WriteHeader(202)
			io.WriteString(w, `{"rev":7,"kind":"tag","value":"slow","complete":false,"applied":["n1"],"pending":["n2"]}`)
		default:
			io.WriteString(w, `{"rev":5,"kind":"tag","value":"match-1234","complete":true,"applied":["n1","n2"],"pending":[]}`)
		}
	}))
	defer srv.Close()
	t.Setenv("CROWDPILOT_ADMIN_TOKEN", "tok")
	t.Setenv("CROWDPILOT_ADMIN", strings.TrimPrefix(srv.URL, "http://"))
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"--tag", "match-1234", "--wait", "2s"}, 0, "applied on all 2 nodes", ""},
		{[]string{"--tag", "slow", "--wait", "1s"}, 3, "1 of 2 nodes had not applied it within 1s: n2", ""},
		{[]string{"--tag", "slow", "--wait", "1s", "--json"}, 3, `"pending": [`, "not applied within 1s on: n2"},
		{[]string{"--tag", "x", "--token", "wrong"}, 1, "", "refused by http://127.0.0.1"},
		{[]string{"--tag", "x", "--admin-token", "wrong"}, 1, "", "(401): missing or wrong bearer token"},
		{[]string{}, 2, "", "exactly one of --key, --tag, --prefix or --all is required"},
		{[]string{"--tag", "a", "--key", "b"}, 2, "", "got --key and --tag"},
		{[]string{"--tag", "a", "--wait", "1m"}, 2, "", "30s maximum"},
		{[]string{"--tag", "a", "--wait", "soon"}, 2, "", `--wait "soon": want a duration such as 500ms, 2s or 1m30s`},
		{[]string{"--nope"}, 2, "", "unknown flag --nope"},
		{[]string{"--tag", "a", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"-h"}, 0, "Exit status", ""},
		{[]string{"--all", "--admin", "http://127.0.0.1:1"}, 1, "", "may or may not be committed"},
	} {
		var out, errb bytes.Buffer
		code := runPurge(context.Background(), tc.args, &out, &errb)
		t.Logf("%v -> %d\n  out: %s  err: %s", tc.args, code, out.String(), errb.String())
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%v: code %d out %q err %q", tc.args, code, out.String(), errb.String())
		}
		if tc.code == 2 && strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: stderr is not one line: %q", tc.args, errb.String())
		}
	}
}
