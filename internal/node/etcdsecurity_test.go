package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/testpki"
)

// secureEtcd is an embedded etcd that serves only TLS, requires client
// certificates signed by ca, and has authentication enabled: user "cp"
// (password "cp-pw") may read and write /crowdpilot/.
type secureEtcd struct {
	etcd *cluster.Embedded
	ca   *testpki.CA
	cert testpki.Pair // a client certificate etcd accepts
}

func startSecureEtcd(t *testing.T) *secureEtcd {
	t.Helper()
	ca := testpki.NewCA(t, "etcd-ca")
	srv := ca.Server(t, "etcd")
	e, err := cluster.StartEmbedded(t.Context(), cluster.EmbedConfig{
		Dir: t.TempDir(), CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, BcryptCost: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	se := &secureEtcd{etcd: e, ca: ca, cert: ca.Client(t, "node")}
	root, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{e.ClientURL()}, CACert: ca.CertFile, Cert: se.cert.CertFile, Key: se.cert.KeyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ctx := t.Context()
	prefix := "/crowdpilot/"
	for i, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "crowdpilot"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "crowdpilot", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, "cp", "cp-pw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "cp", "crowdpilot"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enable etcd auth, step %d: %v", i, err)
		}
	}
	return se
}

// secure sets cfg to reach se with its CA, a client certificate and cp's
// credentials.
func (se *secureEtcd) secure(cfg *Config) {
	cfg.Etcd = []string{se.etcd.ClientURL()}
	cfg.EtcdCACert, cfg.EtcdCert, cfg.EtcdKey = se.ca.CertFile, se.cert.CertFile, se.cert.KeyFile
	cfg.EtcdUsername, cfg.EtcdPassword = "cp", "cp-pw"
}

// TestNodeJoinsTLSAuthEtcd: nodes with etcd's CA, a client certificate and
// the right user join an etcd that requires all three, see each other and
// serve (a request through the non-owner is filled from the owner); a node
// missing any one of them does not start, and says what to change.
func TestNodeJoinsTLSAuthEtcd(t *testing.T) {
	se := startSecureEtcd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := &http.Server{Handler: demo.New(demo.Config{})}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })
	logs := newTestLogs(t)
	config := func(id string) Config {
		cfg := DefaultConfig()
		cfg.ID, cfg.Listen, cfg.Admin = id, "127.0.0.1:0", "127.0.0.1:0"
		cfg.Origin = "http://" + ln.Addr().String()
		cfg.StoreBytes, cfg.MemberTTL, cfg.AdminToken = 16<<20, 3*time.Second, "secret"
		cfg.SharesProcess = true
		cfg.Logger = logs.logger(id)
		se.secure(&cfg)
		return cfg
	}
	tc := &testCluster{t: t, etcd: se.etcd, client: &http.Client{Timeout: 10 * time.Second}}
	for _, id := range []string{"n0", "n1"} {
		nd, err := New(config(id))
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.Start(t.Context()); err != nil {
			t.Fatalf("start %s against TLS+auth etcd: %v", id, err)
		}
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
		tc.nodes = append(tc.nodes, nd)
	}
	tc.waitMembers(2, tc.nodes...)
	for i := range tc.nodes {
		status, body, _, err := tc.get(tc.url(i, "/live/etcd-tls"))
		if err != nil || status != http.StatusOK || body == "" {
			t.Fatalf("GET through n%d: %d %q %v", i, status, body, err)
		}
	}

	for _, tt := range []struct {
		name, want string
		change     func(*Config)
	}{
		{"no client certificate", "tls: certificate required", func(c *Config) { c.EtcdCert, c.EtcdKey = "", "" }},
		{"untrusted server", "x509: certificate signed by unknown authority", func(c *Config) { c.EtcdCACert = testpki.NewCA(t, "other").CertFile }},
		// etcd takes a client certificate's common name as the user.
		{"no credentials", "common name as the user", func(c *Config) { c.EtcdUsername, c.EtcdPassword = "", "" }},
		{"wrong password", "authentication failed", func(c *Config) { c.EtcdPassword = "wrong" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config("bad")
			tt.change(&cfg)
			nd, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = nd.Start(t.Context())
			if err == nil {
				nd.Shutdown(context.Background())
				t.Fatal("a node etcd refuses started")
			}
			if !errors.Is(err, cluster.ErrAccess) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want etcd's refusal with %q", err, tt.want)
			}
		})
	}
	for _, nd := range tc.nodes {
		if got := len(nd.router.Peers()); got != 2 {
			t.Errorf("%s sees %d peers after the refused nodes, want 2", nd.ID(), got)
		}
	}
}
