package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowdpilot/crowdpilot/internal/node"
	"github.com/crowdpilot/crowdpilot/internal/testpki"
)

// TestNodeEtcdFlagsBadCombinations: every bad combination of the etcd
// security flags is a one-line error naming the flag, exit code 2, before
// anything starts.
func TestNodeEtcdFlagsBadCombinations(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	pair := ca.Client(t, "node")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := filepath.Join(dir, "empty")
	pwFile := filepath.Join(dir, "pw")
	for f, body := range map[string]string{empty: "", pwFile: "s3cret\n"} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"--origin", "http://127.0.0.1:9", "--admin-token", "t", "--log-level", "error"}
	https := []string{"--etcd", "https://127.0.0.1:2379"}
	tests := []struct {
		name string
		args []string
		env  string // CROWDPILOT_ETCD_PASSWORD, if not empty
		want string
	}{
		{"cert without key", append(https, "--etcd-cert", pair.CertFile), "", "--etcd-cert is set without its private key"},
		{"key without cert", append(https, "--etcd-key", pair.KeyFile), "", "--etcd-key is set without its certificate"},
		{"unreadable CA", append(https, "--etcd-cacert", missing), "", "--etcd-cacert is unreadable"},
		{"CA over http", []string{"--etcd", "http://127.0.0.1:2379", "--etcd-cacert", ca.CertFile}, "", "--etcd-cacert is set, but endpoint http://127.0.0.1:2379 is plaintext"},
		{"mixed schemes", []string{"--etcd", "https://127.0.0.1:2379,http://127.0.0.1:2380"}, "", "--etcd endpoints mix schemes"},
		{"user without password", append(https, "--etcd-username", "cp"), "", "--etcd-username needs a password"},
		{"password without user", append(https, "--etcd-password-file", pwFile), "", "--etcd-username is required"},
		{"password file missing", append(https, "--etcd-username", "cp", "--etcd-password-file", missing), "", "--etcd-password-file " + missing + ": no such file"},
		{"password file empty", append(https, "--etcd-username", "cp", "--etcd-password-file", empty), "", "--etcd-password-file " + empty + " is empty"},
		{"file and env", append(https, "--etcd-username", "cp", "--etcd-password-file", pwFile), "env-pw", "--etcd-password-file and CROWDPILOT_ETCD_PASSWORD are both set"},
		{"password in the clear", []string{"--etcd", "http://10.1.2.3:2379", "--etcd-username", "cp"}, "env-pw", "--etcd-username over plaintext"},
		{"no password flag", append(https, "--etcd-password", "s3cret"), "", "unknown flag --etcd-password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv(etcdPasswordEnv, tt.env)
			}
			var stderr strings.Builder
			code := runNode(context.Background(), append(append([]string{}, tt.args...), base...), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line with %q", code, stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "s3cret") || strings.Contains(stderr.String(), "env-pw") {
				t.Errorf("the password is in the error: %q", stderr.String())
			}
		})
	}
	// up runs its own plaintext etcd on loopback: the flags are not its.
	var stderr strings.Builder
	if code := runUp(context.Background(), []string{"--etcd-cacert", ca.CertFile}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--etcd-cacert") {
		t.Errorf("up --etcd-cacert: exit %d, stderr %q", code, stderr.String())
	}
}

// TestNodeEtcdFlagsReachConfig: the flags, the password file (its one
// trailing newline dropped) and the environment variable reach the node's
// config.
func TestNodeEtcdFlagsReachConfig(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3 cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(t *testing.T, args []string) (node.Config, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		var nf nodeFlags
		nf.register(fs)
		var ef etcdFlags
		ef.register(fs)
		if err := parseFlags(fs, args, io.Discard, "", ""); err != nil {
			t.Fatal(err)
		}
		c := nf.config(slog.New(slog.DiscardHandler))
		return c, ef.apply(&c, os.LookupEnv)
	}
	c, err := parse(t, []string{"--etcd-cacert", "ca.pem", "--etcd-cert", "c.pem", "--etcd-key", "k.pem", "--etcd-username", "cp", "--etcd-password-file", pw})
	if err != nil {
		t.Fatal(err)
	}
	if c.EtcdCACert != "ca.pem" || c.EtcdCert != "c.pem" || c.EtcdKey != "k.pem" || c.EtcdUsername != "cp" || c.EtcdPassword != "s3 cret" {
		t.Errorf("config from flags: %q %q %q %q %q", c.EtcdCACert, c.EtcdCert, c.EtcdKey, c.EtcdUsername, c.EtcdPassword)
	}
	t.Setenv(etcdPasswordEnv, "from-env")
	t.Setenv("CROWDPILOT_ETCD_USERNAME", "env-user")
	c, err = parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.EtcdUsername != "env-user" || c.EtcdPassword != "from-env" {
		t.Errorf("config from the environment: user %q password %q", c.EtcdUsername, c.EtcdPassword)
	}
}
