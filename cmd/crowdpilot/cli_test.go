package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout.Reset()
		if code := run(args, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "crowdpilot ") || !strings.Contains(stdout.String(), runtime.Version()) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/crowdpilot/crowdpilot", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "de12764abc"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-01T20:00:00Z"}}}
	if got, want := versionLine(info), "crowdpilot v0.3.0 (rev de12764abc, modified, 2026-12-01T20:00:00Z) go1.26.8"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
}

// TestHelpStyle: every subcommand's --help is on stdout, exit 0, in one
// style: the synopsis, --config, and each flag's environment variable (or
// "command line only"), with no default said twice.
func TestHelpStyle(t *testing.T) {
	doubled := regexp.MustCompile(`\(default [^)]*\).*\n.*\(default `)
	for name := range subcommands {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{name, "--help"}, &stdout, &stderr)
			out := stdout.String()
			if code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			for _, want := range []string{"Usage: crowdpilot " + name, "Flags:\n", "  --config FILE\n", "CROWDPILOT_<FLAG>"} {
				if !strings.Contains(out, want) && !(want == "CROWDPILOT_<FLAG>" && strings.Contains(out, "CROWDPILOT_FLAG")) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
			// Each flag is "  --name [VALUE]", its usage, then its notes.
			lines := strings.Split(out, "\n")
			for i, l := range lines {
				if !strings.HasPrefix(l, "  --") {
					continue
				}
				flagName := strings.Fields(l)[0][2:]
				if i+2 >= len(lines) || !strings.HasPrefix(lines[i+2], "        (") {
					t.Errorf("--%s: no notes line", flagName)
					continue
				}
				notes := lines[i+2]
				if !strings.Contains(notes, "env "+envName(flagName)) && !strings.Contains(notes, "command line only") {
					t.Errorf("--%s: notes %q name neither its variable nor command line only", flagName, notes)
				}
				if strings.Contains(lines[i+1], "(default") || doubled.MatchString(lines[i+1]+"\n"+notes) {
					t.Errorf("--%s: default said twice: %q / %q", flagName, lines[i+1], notes)
				}
			}
			for _, bare := range []string{"1048576", "268435456", "8388608"} {
				if strings.Contains(out, bare) {
					t.Errorf("help shows a byte size as %s:\n%s", bare, out)
				}
			}
		})
	}
	var stdout bytes.Buffer
	run([]string{"node", "--help"}, &stdout, io.Discard)
	for _, want := range []string{"  --store-bytes SIZE\n", "(default 256MiB; env CROWDPILOT_STORE_BYTES)", `(default "127.0.0.1:8080"; env CROWDPILOT_LISTEN)`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("node help lacks %q", want)
		}
	}
}

// TestFlagErrors: a bad flag, variable or config value is one line naming
// the flag and what a valid value looks like, exit 2, and nothing starts.
func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badTTL := cfg("bad-ttl.yaml", "default-ttl: soon\n")
	unknown := cfg("unknown.yaml", "stor-bytes: 1GiB\n")
	purgeTag := cfg("purge-tag.yaml", "tag: live\n")
	loadRate := cfg("load-rate.yaml", "rate: 0\ntarget: [http://127.0.0.1:1]\n")
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []string // all in the one line
	}{
		{[]string{"up", "--default-ttl", "5"}, nil, []string{`--default-ttl "5"`, "duration such as 500ms"}},
		{[]string{"node", "--store-bytes", "lots"}, nil, []string{`--store-bytes "lots"`, "such as 4096, 64MiB"}},
		{[]string{"node", "--autopilot=maybe"}, nil, []string{`--autopilot "maybe"`, "true or false"}},
		{[]string{"up", "--nodes", "x"}, nil, []string{`--nodes "x"`, "whole number such as 100"}},
		{[]string{"up", "--nodes", "-1"}, nil, []string{"--nodes -1", "between 0 and 64"}},
		{[]string{"status", "--timeout"}, nil, []string{"--timeout needs a value", "duration such as"}},
		{[]string{"load", "--timeout", "soon", "--target", "http://127.0.0.1:1"}, nil, []string{`--timeout "soon"`, "duration such as"}},
		{[]string{"purge", "--wait", "soon", "--all"}, nil, []string{`--wait "soon"`, "duration such as"}},
		{[]string{"node", "--bogus"}, nil, []string{"unknown flag --bogus"}},
		{[]string{"node"}, map[string]string{"CROWDPILOT_DEFAULT_TTL": "abc"}, []string{`CROWDPILOT_DEFAULT_TTL="abc" (--default-ttl)`, "duration such as"}},
		{[]string{"up", "--config", badTTL}, nil, []string{"--config " + badTTL, "default-ttl", "duration such as"}},
		{[]string{"node", "--config", unknown}, nil, []string{`unknown setting "stor-bytes"`}},
		{[]string{"purge", "--config", purgeTag}, nil, []string{`"tag" can only be given on the command line`}},
		{[]string{"load", "--config", loadRate}, nil, []string{"rate 0"}},
		{[]string{"up", "--config", filepath.Join(dir, "missing.yaml")}, nil, []string{"--config", "no such file"}},
		{[]string{"node", "--etcd", "http://127.0.0.1:1", "--origin", "http://o", "--autopilot=false", "--store-bytes", "1KiB", "--origin-timeout", "-1s"}, nil,
			[]string{"--store-bytes 1024 must be at least 1 MiB", "; --max-object-bytes", "; --origin-timeout -1s must be positive"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			line := stderr.String()
			if code != 2 || strings.Count(line, "\n") != 1 || stdout.Len() > 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, nothing on stdout, one line on stderr", code, stdout.String(), line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q lacks %q", line, w)
				}
			}
		})
	}
}

// TestConfigFileForLoadAndPurge: load and purge read --config like the
// other commands (the file's values reach the command), with the command
// line winning.
func TestConfigFileForLoadAndPurge(t *testing.T) {
	var purged []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/purge":
			b, _ := io.ReadAll(r.Body)
			purged = append(purged, r.Header.Get("Authorization")+" "+string(b))
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"rev":5,"kind":"tag","value":"live","complete":true,"applied":["n1"],"pending":[]}`)
		default:
			io.WriteString(w, "hello\n")
		}
	}))
	defer srv.Close()
	// Keys are checked against the command's flags: a file per command.
	dir := t.TempDir()
	purgeCfg, loadCfg := filepath.Join(dir, "purge.yaml"), filepath.Join(dir, "load.yaml")
	os.WriteFile(purgeCfg, []byte(fmt.Sprintf("admin: %s\nadmin-token: from-file\n", srv.URL)), 0o600)
	os.WriteFile(loadCfg, []byte(fmt.Sprintf("target: [%s]\nrate: 20\nduration: 500ms\n", srv.URL)), 0o600)

	var stdout, stderr bytes.Buffer
	if code := run([]string{"purge", "--config", purgeCfg, "--tag", "live"}, &stdout, &stderr); code != 0 {
		t.Fatalf("purge --config: exit %d, stderr %q", code, stderr.String())
	}
	if len(purged) != 1 || !strings.HasPrefix(purged[0], "Bearer from-file ") || !strings.Contains(purged[0], `"tag":"live"`) {
		t.Errorf("purge sent %q; want the file's token and the command line's tag", purged)
	}
	stdout.Reset()
	if code := run([]string{"load", "--config", loadCfg, "--rate", "10"}, &stdout, &stderr); code != 0 {
		t.Fatalf("load --config: exit %d, stderr %q", code, stderr.String())
	}
	// 10/s (the command line wins over the file's 20/s) for 500ms.
	if !strings.Contains(stdout.String(), "0 of 5 scheduled requests not sent") {
		t.Errorf("load with --config: %s", stdout.String())
	}
}

// TestUpChecksNodeConfigBeforeEtcd: a node setting that New would refuse
// fails before embedded etcd starts: one line, nothing else printed.
func TestUpChecksNodeConfigBeforeEtcd(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runUp(context.Background(), []string{
		"--prefresh", "2", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--etcd-listen", "127.0.0.1:0", "--etcd-peer", "127.0.0.1:0", "--demo-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-format", "text",
	}, &stdout, &stderr)
	if code != 2 || stdout.Len() > 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "node config: --prefresh 2 must be in (0, 1]") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2 and only the prefresh error", code, stdout.String(), stderr.String())
	}
}

// TestStatusReleasedReplicas: status lists released replicas apart,
// without an expiry, and the operator's pin and cap; --json keeps every
// replica.
func TestStatusReleasedReplicas(t *testing.T) {
	exp := time.Now().Add(20 * time.Second).UTC().Format(time.RFC3339Nano)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/cluster":
			io.WriteString(w, `{"self":"n0","members":[{"id":"n0","addr":"a:1","admin":"a:2","state":"up","purge_rev":3}]}`)
		case "/api/v1/hot":
			fmt.Fprintf(w, `{"leader":"n0","hot":[{"key":"x/live/<1>","rate":900,"owner":"n0","pin":1,"cap":2,"replicas":[
				{"node":"n1","expires":%q},{"node":"n2","expires":%q,"released":true}]}],
				"nodes":[{"node":"n0","cpu":0.2,"cpu_limit":2,"in_flight":3,"p99":1000000,"error_rate":0},
				{"node":"n3","near_copies":[{"key":"x/live/<1>","expires":%q}]}]}`, exp, exp, exp)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := runStatus(context.Background(), []string{"--admin", srv.URL}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	row := regexp.MustCompile(`(?m)^x/live/<1>\s+900\s+n0\s+n1\s+(1\d|20)s\s+n2\s+n3\s+1/2\s*$`)
	if !row.MatchString(out) || !strings.Contains(out, "RELEASED (LAPSING)") || !strings.Contains(out, "CPU USED/LIMIT (CORES)") || !strings.Contains(out, "0.20/2.00") {
		t.Errorf("status:\n%s\nwant n1 with its expiry, n2 released without one, n3's near copy, pin 1 and cap 2, and a labelled CPU column", out)
	}
	stdout.Reset()
	if code := runStatus(context.Background(), []string{"--admin", srv.URL, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--json: exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stdout.String(), `\u003c`) || !strings.Contains(stdout.String(), `"x/live/<1>"`) || !strings.Contains(stdout.String(), `"released": true`) {
		t.Errorf("status --json:\n%s", stdout.String())
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil || v["cluster"] == nil || v["hot"] == nil {
		t.Errorf("status --json is not {cluster, hot}: %v", err)
	}
}
