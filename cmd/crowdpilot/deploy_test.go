package main

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/crowdpilot/crowdpilot/internal/node"
	"github.com/crowdpilot/crowdpilot/internal/testpki"
)

// loadNodeConfig runs `crowdpilot node` flag handling on args, as runNode
// does, up to the validated node.Config, without starting anything.
func loadNodeConfig(t *testing.T, args ...string) node.Config {
	t.Helper()
	fs := flag.NewFlagSet("crowdpilot node", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	var ef etcdFlags
	ef.register(fs)
	var pf peerFlags
	pf.register(fs)
	if err := parseFlags(fs, args, io.Discard, "", ""); err != nil {
		t.Fatalf("crowdpilot node %v: %v", args, err)
	}
	if _, err := newLogger(io.Discard, nf.logFormat, nf.logLevel); err != nil {
		t.Fatalf("crowdpilot node %v: %v", args, err)
	}
	cfg := nf.config(slog.New(slog.DiscardHandler))
	if err := ef.apply(&cfg, os.LookupEnv); err != nil {
		t.Fatalf("crowdpilot node %v: %v", args, err)
	}
	if err := pf.apply(fs, &cfg); err != nil {
		t.Fatalf("crowdpilot node %v: %v", args, err)
	}
	if _, err := node.New(cfg); err != nil {
		t.Fatalf("crowdpilot node %v: %v", args, err)
	}
	return cfg
}

// clearNodeEnv keeps CROWDPILOT_* from the test's environment out of the
// flags.
func clearNodeEnv(t *testing.T) {
	for _, name := range []string{"ID", "ETCD", "ORIGIN", "LISTEN", "ADMIN", "ADMIN_TOKEN", "ADVERTISE", "ADVERTISE_ADMIN", "STORE_BYTES", "SHUTDOWN_GRACE"} {
		t.Setenv("CROWDPILOT_"+name, "")
		os.Unsetenv("CROWDPILOT_" + name)
	}
}

// TestDeployExampleConfig loads deploy/crowdpilot.yaml as the systemd unit
// does: the file, and the token from the environment.
func TestDeployExampleConfig(t *testing.T) {
	clearNodeEnv(t)
	t.Setenv("CROWDPILOT_ADMIN_TOKEN", "t0ken")
	cfg := loadNodeConfig(t, "--config", filepath.Join("..", "..", "deploy", "crowdpilot.yaml"))
	// A few values from the file, so a key the loader ignored would show.
	if cfg.ID != "cache-1" || len(cfg.Etcd) != 3 || cfg.StoreBytes != 1<<30 || cfg.OriginTimeout != 2500*time.Millisecond || cfg.ShutdownGrace != 10*time.Second {
		t.Errorf("deploy/crowdpilot.yaml loaded as id %q etcd %v store %d origin-timeout %v shutdown-grace %v",
			cfg.ID, cfg.Etcd, cfg.StoreBytes, cfg.OriginTimeout, cfg.ShutdownGrace)
	}
}

// TestDeployKubernetesConfig loads the configuration the Kubernetes
// manifests mount, with the environment the pod sets.
func TestDeployKubernetesConfig(t *testing.T) {
	clearNodeEnv(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "k8s", "crowdpilot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The ConfigMap is the first document.
	doc, _, _ := strings.Cut(string(b), "\n---\n")
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil || cm.Kind != "ConfigMap" {
		t.Fatalf("first document of deploy/k8s/crowdpilot.yaml is no ConfigMap (%v)", err)
	}
	// The etcd client certificate the pod mounts from its Secret: real
	// files where the config names them, in a directory of the test's.
	const mount = "/var/run/crowdpilot/etcd/"
	conf := cm.Data["crowdpilot.yaml"]
	if !strings.Contains(conf, mount) {
		t.Fatalf("the ConfigMap's config names no etcd certificate under %s", mount)
	}
	certs := t.TempDir()
	ca := testpki.NewCA(t, "etcd-ca")
	client := ca.Client(t, "crowdpilot")
	for name, from := range map[string]string{"ca.crt": ca.CertFile, "tls.crt": client.CertFile, "tls.key": client.KeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf = strings.ReplaceAll(conf, mount, certs+"/")
	path := filepath.Join(t.TempDir(), "crowdpilot.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"ID": "crowdpilot-7d9f-x2", "LISTEN": "0.0.0.0:8080", "ADMIN": "0.0.0.0:9080",
		"ADVERTISE": "10.0.0.7:8080", "ADVERTISE_ADMIN": "10.0.0.7:9080", "ADMIN_TOKEN": "t0ken",
	} {
		t.Setenv("CROWDPILOT_"+k, v)
	}
	cfg := loadNodeConfig(t, "--config", path)
	if cfg.ID != "crowdpilot-7d9f-x2" || cfg.AdvertiseAddr != "10.0.0.7:8080" || len(cfg.Etcd) != 3 || cfg.Origin == "" {
		t.Errorf("ConfigMap and pod environment loaded as id %q advertise %q etcd %v origin %q", cfg.ID, cfg.AdvertiseAddr, cfg.Etcd, cfg.Origin)
	}
	if cfg.EtcdCACert != filepath.Join(certs, "ca.crt") || cfg.EtcdCert != filepath.Join(certs, "tls.crt") || cfg.EtcdKey != filepath.Join(certs, "tls.key") {
		t.Errorf("etcd TLS files loaded as %q %q %q", cfg.EtcdCACert, cfg.EtcdCert, cfg.EtcdKey)
	}
}
