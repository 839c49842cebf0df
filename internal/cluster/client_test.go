package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testpki"
)

// TestClientConfigValidate: each bad combination is refused with a message
// that starts with the setting to change; good ones pass.
func TestClientConfigValidate(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	pair := ca.Client(t, "c")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	https := []string{"https://127.0.0.1:2379"}
	tests := []struct {
		name string
		cfg  ClientConfig
		want string // "" = valid; else the start of the error
	}{
		{"plaintext", ClientConfig{Endpoints: []string{"http://127.0.0.1:2379"}}, ""},
		{"bare plaintext", ClientConfig{Endpoints: []string{"127.0.0.1:2379"}}, ""},
		{"https, system roots", ClientConfig{Endpoints: https}, ""},
		{"https, CA and client cert", ClientConfig{Endpoints: https, CACert: ca.CertFile, Cert: pair.CertFile, Key: pair.KeyFile}, ""},
		{"bare with CA means TLS", ClientConfig{Endpoints: []string{"etcd:2379"}, CACert: ca.CertFile}, ""},
		{"password over loopback plaintext", ClientConfig{Endpoints: []string{"http://127.0.0.1:2379"}, Username: "u", Password: "p"}, ""},
		{"password over TLS", ClientConfig{Endpoints: []string{"https://etcd.example:2379"}, Username: "u", Password: "p"}, ""},
		{"no endpoints", ClientConfig{}, "etcd endpoints are required"},
		{"bad endpoint", ClientConfig{Endpoints: []string{"ftp://x:1"}}, "etcd endpoints "},
		{"mixed schemes", ClientConfig{Endpoints: []string{"https://a:1", "http://b:1"}}, "etcd endpoints mix"},
		{"CA with http", ClientConfig{Endpoints: []string{"http://127.0.0.1:2379"}, CACert: ca.CertFile}, "etcd cacert is set, but"},
		{"cert without key", ClientConfig{Endpoints: https, Cert: pair.CertFile}, "etcd cert is set without"},
		{"key without cert", ClientConfig{Endpoints: https, Key: pair.KeyFile}, "etcd key is set without"},
		{"unreadable CA", ClientConfig{Endpoints: https, CACert: missing}, "etcd cacert is unreadable"},
		{"CA not PEM", ClientConfig{Endpoints: https, CACert: garbage}, "etcd cacert " + garbage + ": no PEM"},
		{"unreadable key", ClientConfig{Endpoints: https, Cert: pair.CertFile, Key: missing}, "etcd key is unreadable"},
		{"key not PEM", ClientConfig{Endpoints: https, Cert: pair.CertFile, Key: garbage}, "etcd cert " + pair.CertFile + " with etcd key"},
		{"username without password", ClientConfig{Endpoints: https, Username: "u"}, "etcd password is required"},
		{"password without username", ClientConfig{Endpoints: https, Password: "p"}, "etcd username is required"},
		{"password in the clear", ClientConfig{Endpoints: []string{"http://10.0.0.1:2379"}, Username: "u", Password: "p"}, "etcd username over plaintext"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

// TestClientConfigLogValueHidesPassword: the password never reaches a log.
func TestClientConfigLogValueHidesPassword(t *testing.T) {
	v := ClientConfig{Endpoints: []string{"https://e:1"}, Username: "u", Password: "hunter2"}.LogValue()
	if s := v.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "u") {
		t.Errorf("LogValue = %s", s)
	}
}

// TestDialTLS: against an etcd that serves TLS and requires client
// certificates, the right CA and certificate read and write; a missing
// client certificate or a wrong CA is ErrAccess at once.
func TestDialTLS(t *testing.T) {
	ca := testpki.NewCA(t, "etcd-ca")
	srv := ca.Server(t, "etcd")
	cli := ca.Client(t, "node")
	other := testpki.NewCA(t, "other-ca")
	stranger := other.Client(t, "stranger")
	e, err := StartEmbedded(t.Context(), EmbedConfig{Dir: t.TempDir(), CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if !strings.HasPrefix(e.ClientURL(), "https://") {
		t.Fatalf("ClientURL = %s, want https", e.ClientURL())
	}
	ep := []string{e.ClientURL()}

	c, err := Dial(t.Context(), ClientConfig{Endpoints: ep, CACert: ca.CertFile, Cert: cli.CertFile, Key: cli.KeyFile}, Prefix("test"), testLogger(t))
	if err != nil {
		t.Fatalf("Dial with the right CA and certificate: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(t.Context(), Prefix("test")+"k", "v"); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}

	for _, tt := range []struct {
		name string
		cfg  ClientConfig
	}{
		{"no client certificate", ClientConfig{Endpoints: ep, CACert: ca.CertFile}},
		{"certificate from another CA", ClientConfig{Endpoints: ep, CACert: ca.CertFile, Cert: stranger.CertFile, Key: stranger.KeyFile}},
		{"server not trusted", ClientConfig{Endpoints: ep, CACert: other.CertFile, Cert: cli.CertFile, Key: cli.KeyFile}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(t.Context(), tt.cfg, Prefix("test"), testLogger(t))
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			t.Log(err)
			if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), "TLS") {
				t.Fatalf("Dial = %v, want ErrAccess naming TLS", err)
			}
		})
	}
}

// enableAuth turns on etcd authentication: a root user, and user with a
// role that may read and write the cluster prefix.
func enableAuth(t *testing.T, root *clientv3.Client, user, password, prefix string) {
	t.Helper()
	ctx := t.Context()
	steps := []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "crowdpilot"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "crowdpilot", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, user, password); return err },
		func() error { _, err := root.UserGrantRole(ctx, user, "crowdpilot"); return err },
		func() error { _, err := root.UserAdd(ctx, "nobody", "nobody-pw"); return err }, // no role
		func() error { _, err := root.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("enable auth, step %d: %v", i, err)
		}
	}
}

// TestDialAuth: against an etcd with authentication, the right user reads
// and writes its prefix; no credentials, a wrong password or a user whose
// role does not cover the prefix is ErrAccess with what to change.
func TestDialAuth(t *testing.T) {
	e, err := StartEmbedded(t.Context(), EmbedConfig{Dir: t.TempDir(), BcryptCost: 4, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	enableAuth(t, newTestClient(t, e), "cp", "cp-pw", Prefix("test"))
	ep := []string{e.ClientURL()}

	c, err := Dial(t.Context(), ClientConfig{Endpoints: ep, Username: "cp", Password: "cp-pw"}, Prefix("test"), testLogger(t))
	if err != nil {
		t.Fatalf("Dial with the right credentials: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(t.Context(), Prefix("test")+"k", "v"); err != nil {
		t.Fatalf("Put with auth: %v", err)
	}
	lease, err := c.Grant(t.Context(), 5)
	if err != nil {
		t.Fatalf("Grant with auth: %v", err)
	}
	if _, err := c.Put(t.Context(), Prefix("test")+"leased", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("Put under a lease with auth: %v", err)
	}
	if _, err := c.Revoke(t.Context(), lease.ID); err != nil {
		t.Fatalf("Revoke with auth: %v", err)
	}

	for _, tt := range []struct {
		name, want string
		cfg        ClientConfig
	}{
		{"no credentials", "user name is empty", ClientConfig{Endpoints: ep}},
		{"wrong password", "authentication failed", ClientConfig{Endpoints: ep, Username: "cp", Password: "wrong"}},
		{"no role on the prefix", "permission denied", ClientConfig{Endpoints: ep, Username: "nobody", Password: "nobody-pw"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			c, err := Dial(ctx, tt.cfg, Prefix("test"), testLogger(t))
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			t.Log(err)
			if !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial = %v, want ErrAccess with %q", err, tt.want)
			}
		})
	}
}

// TestDialUnreachableIsNotAnError: an etcd that does not answer yet is no
// reason to refuse to start.
func TestDialUnreachableIsNotAnError(t *testing.T) {
	c, err := Dial(t.Context(), ClientConfig{Endpoints: []string{"127.0.0.1:1"}}, Prefix("test"), testLogger(t))
	if err != nil {
		t.Fatalf("Dial to nothing: %v", err)
	}
	c.Close()
}
