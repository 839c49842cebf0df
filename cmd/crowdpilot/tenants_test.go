package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTenantsFlagRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("tenants: {a: {min: 0}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.yaml"), bad} {
		var stdout, stderr bytes.Buffer
		code := runNode(t.Context(), []string{"--tenants", path, "--etcd", "127.0.0.1:1"}, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || !strings.Contains(msg, "-tenants") || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("--tenants %s: exit %d, stderr %q; want 2 and one line naming the flag", path, code, msg)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("tenants: {a: {hosts: [a.example]}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var f tenantsFlag
	if err := f.Set(good); err != nil || f.cfg == nil || len(f.cfg.Tenants) != 1 || f.String() != good {
		t.Errorf("Set(good) = %v, %+v", err, f)
	}
}

func TestLabelsFlag(t *testing.T) {
	var f labelsFlag
	if err := f.Set(" hw=dedicated, rack=r1 ,"); err != nil || f.m["hw"] != "dedicated" || f.m["rack"] != "r1" || len(f.m) != 2 {
		t.Fatalf("Set = %v, %v", err, f.m)
	}
	if got := f.String(); got != "hw=dedicated,rack=r1" {
		t.Errorf("String = %q", got)
	}
	for _, bad := range []string{"hw", "=x", "a=1,b"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("Set(%q): no error", bad)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runNode(t.Context(), []string{"--labels", "nope", "--etcd", "127.0.0.1:1"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-labels") {
		t.Errorf("--labels nope: exit %d, %q", code, stderr.String())
	}
}
