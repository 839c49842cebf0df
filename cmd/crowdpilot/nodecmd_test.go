package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/node"
)

// TestNodeFlagsZeroIsAValue: a freshness or grace flag set to 0 reaches the
// node's config as 0, and absent flags keep DefaultConfig's values.
func TestNodeFlagsZeroIsAValue(t *testing.T) {
	d := node.DefaultConfig()
	tests := []struct {
		name  string
		args  []string
		check func(node.Config) bool
	}{
		{"defaults", nil, func(c node.Config) bool {
			return c.DefaultTTL == d.DefaultTTL && c.StaleWhileRevalidate == d.StaleWhileRevalidate &&
				c.StaleIfError == d.StaleIfError && c.IgnoreClientRevalidate && !c.Strict && c.Prefresh == d.Prefresh
		}},
		{"default-ttl 0", []string{"--default-ttl", "0"}, func(c node.Config) bool { return c.DefaultTTL == 0 }},
		{"default-ttl 30s", []string{"--default-ttl", "30s"}, func(c node.Config) bool { return c.DefaultTTL == 30*time.Second }},
		{"stale-while-revalidate 0", []string{"--stale-while-revalidate", "0"}, func(c node.Config) bool { return c.StaleWhileRevalidate == 0 }},
		{"stale-if-error 0", []string{"--stale-if-error", "0"}, func(c node.Config) bool { return c.StaleIfError == 0 }},
		{"shutdown-grace 0", []string{"--shutdown-grace", "0"}, func(c node.Config) bool { return c.ShutdownGrace == 0 }},
		{"max-body-bytes 0", []string{"--max-body-bytes", "0"}, func(c node.Config) bool { return c.MaxBodyBytes == 0 }},
		{"ignore-client-revalidate=false", []string{"--ignore-client-revalidate=false"}, func(c node.Config) bool { return !c.IgnoreClientRevalidate }},
		{"strict", []string{"--strict"}, func(c node.Config) bool { return c.Strict }},
		{"key-host", []string{"--key-host", "--allowed-hosts", "a.example, b.example"}, func(c node.Config) bool {
			return c.KeyHost && len(c.AllowedHosts) == 2
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var nf nodeFlags
			nf.register(fs)
			if err := parseFlags(fs, tt.args, io.Discard, "", ""); err != nil {
				t.Fatal(err)
			}
			if err := checkNodeFlags(fs, &nf); err != nil {
				t.Fatal(err)
			}
			if c := nf.config(slog.New(slog.DiscardHandler)); !tt.check(c) {
				t.Errorf("config from %q: %+v", tt.args, c)
			}
		})
	}
}

// TestNodeStrictConflicts: --strict with a deviation it would override is a
// one-line error naming the flag, exit code 2.
func TestNodeStrictConflicts(t *testing.T) {
	for _, args := range [][]string{
		{"--strict", "--default-ttl", "60s"},
		{"--strict", "--stale-while-revalidate", "10s"},
		{"--strict", "--stale-if-error", "1h"},
		{"--strict", "--ignore-client-revalidate"},
	} {
		var stderr strings.Builder
		code := runNode(context.Background(), append(args, "--log-level", "error"), io.Discard, &stderr)
		flagName := args[1] // the flag --strict excludes
		if code != 2 || !strings.Contains(stderr.String(), "--strict excludes "+flagName) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	// An explicit 0 where zero is not a value is an error, not the default.
	for _, name := range []string{"max-inflight", "store-bytes", "origin-timeout", "member-ttl", "origin-min-concurrency"} {
		var stderr strings.Builder
		code := runNode(context.Background(), []string{"--" + name, "0", "--log-level", "error"}, io.Discard, &stderr)
		if code != 2 || stderr.String() != "crowdpilot node: --"+name+" must not be 0\n" {
			t.Errorf("--%s 0: exit %d, stderr %q", name, code, stderr.String())
		}
	}
	// --key-host without the sites it keys apart.
	var kh strings.Builder
	if code := runNode(context.Background(), []string{"--key-host", "--log-level", "error"}, io.Discard, &kh); code != 2 || kh.String() != "crowdpilot node: --key-host needs --allowed-hosts (the sites it keys apart)\n" {
		t.Errorf("--key-host alone: exit %d, stderr %q", code, kh.String())
	}
	// A floor above the ceiling names the flag.
	var floor strings.Builder
	code := runNode(context.Background(), []string{"--origin-min-concurrency", "100", "--origin-max-concurrency", "64", "--autopilot=false",
		"--origin", "http://127.0.0.1:1", "--etcd", "http://127.0.0.1:1", "--log-level", "error"}, io.Discard, &floor)
	if code != 2 || !strings.Contains(floor.String(), "--origin-min-concurrency 100 must not exceed origin max concurrency 64") {
		t.Errorf("--origin-min-concurrency above the ceiling: exit %d, stderr %q", code, floor.String())
	}
	// Zero values agree with --strict.
	var stderr strings.Builder
	code = runNode(context.Background(), []string{"--strict", "--stale-while-revalidate", "0", "--log-level", "error"}, io.Discard, &stderr)
	if strings.Contains(stderr.String(), "--strict excludes") {
		t.Errorf("--strict --stale-while-revalidate 0 rejected: exit %d %q", code, stderr.String())
	}
}
