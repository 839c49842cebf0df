package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// Client timings. Keep-alive pings every 5s (the least etcd servers accept by
// default, see --grpc-keepalive-min-time) with a 2s timeout, so a dead or
// partitioned server is noticed within about 7s; reconnect attempts back off
// to at most 2s, so a server that returns is used again within seconds.
const (
	clientDialTimeout      = 2 * time.Second
	clientKeepAliveTime    = 5 * time.Second
	clientKeepAliveTimeout = 2 * time.Second
	clientReconnectMax     = 2 * time.Second
	// clientAuthTimeout bounds authenticating while the client is built
	// (with a username): a TLS handshake and etcd's password hash can take
	// longer than a dial on a busy machine.
	clientAuthTimeout = 10 * time.Second
)

// Client is the etcd client this package's stores are built on. Code
// outside this package gets one from Dial or NewClient, hands it to the
// stores' constructors and closes it; every read and write of the
// cluster's keys goes through a store here, which owns the key layout,
// the sealing of records and the timeouts.
type Client = clientv3.Client

// ClientConfig says how to reach etcd and who to be there: the settings
// etcd's own clients take (etcdctl --endpoints, --cacert, --cert, --key,
// --user). The zero value of each security field means "not used".
type ClientConfig struct {
	// Endpoints are etcd client URLs: "https://host:port" (TLS),
	// "http://host:port" (plaintext) or "host:port" (TLS when any TLS
	// field is set, else plaintext). All must use the same scheme.
	// Required.
	Endpoints []string
	// CACert is a PEM file of the CAs that sign etcd's server
	// certificates. Empty means the system's roots (for https endpoints).
	CACert string
	// Cert and Key are the PEM files of this client's certificate and
	// its private key, for an etcd that requires client certificates
	// (--client-cert-auth). Both or neither.
	Cert, Key string
	// Username and Password authenticate to an etcd with auth enabled.
	// Both or neither. The password is never logged.
	Username, Password string
}

// LogValue keeps the password out of logs.
func (c ClientConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("endpoints", c.Endpoints),
		slog.Bool("tls", c.usesTLS()),
		slog.Bool("client_cert", c.Cert != ""),
		slog.String("username", c.Username),
	)
}

// usesTLS reports whether the connection is TLS: an https endpoint, or a
// TLS file with endpoints that do not say.
func (c ClientConfig) usesTLS() bool {
	s, _ := c.scheme()
	return s == "https" || (s == "" && (c.CACert != "" || c.Cert != ""))
}

// scheme is the endpoints' common scheme: "http", "https" or "" (bare
// host:port); an error if they differ or one is not a URL etcd takes.
func (c ClientConfig) scheme() (string, error) {
	var first string
	for i, ep := range c.Endpoints {
		s := ""
		if strings.Contains(ep, "://") {
			u, err := url.Parse(ep)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return "", fmt.Errorf("etcd endpoints %q is not http://host:port, https://host:port or host:port", ep)
			}
			s = u.Scheme
		} else if ep == "" || strings.ContainsAny(ep, "/?#@ ") {
			return "", fmt.Errorf("etcd endpoints %q is not http://host:port, https://host:port or host:port", ep)
		}
		if i == 0 {
			first = s
		} else if s != first {
			return "", fmt.Errorf("etcd endpoints mix schemes (%q and %q): etcd's client uses the first one's for all", c.Endpoints[0], ep)
		}
	}
	return first, nil
}

// Validate reports what is wrong with c, reading the certificate files:
// each problem starts with the setting it is about ("etcd cacert ...").
func (c ClientConfig) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("etcd endpoints are required")
	}
	s, err := c.scheme()
	if err != nil {
		return err
	}
	var errs []error
	if s == "http" {
		for _, f := range []struct{ name, v string }{{"cacert", c.CACert}, {"cert", c.Cert}, {"key", c.Key}} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("etcd %s is set, but endpoint %s is plaintext http:// (etcd's client would silently not use TLS): use https://", f.name, c.Endpoints[0]))
			}
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		if c.Cert == "" {
			errs = append(errs, errors.New("etcd key is set without its certificate (etcd cert)"))
		} else {
			errs = append(errs, errors.New("etcd cert is set without its private key (etcd key)"))
		}
	}
	if c.Username == "" && c.Password != "" {
		errs = append(errs, errors.New("etcd username is required with a password"))
	}
	if c.Username != "" && c.Password == "" {
		errs = append(errs, errors.New("etcd password is required with a username"))
	}
	if c.Username != "" && !c.usesTLS() {
		for _, ep := range c.Endpoints {
			if !isLoopbackEndpoint(ep) {
				errs = append(errs, fmt.Errorf("etcd username over plaintext to %s would send the password in the clear: use https:// endpoints", ep))
				break
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, err = c.tlsConfig()
	return err
}

// isLoopbackEndpoint reports whether ep names a loopback host.
func isLoopbackEndpoint(ep string) bool {
	host := ep
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		host = u.Host
	}
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	host = strings.Trim(host, "[]")
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// tlsConfig loads the TLS files; nil when the connection is plaintext.
func (c ClientConfig) tlsConfig() (*tls.Config, error) {
	if !c.usesTLS() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcd cacert is unreadable: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd cacert %s: no PEM certificate in it", c.CACert)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		for _, f := range []struct{ name, path string }{{"cert", c.Cert}, {"key", c.Key}} {
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("etcd %s is unreadable: %w", f.name, err)
			}
		}
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd cert %s with etcd key %s: %w", c.Cert, c.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// NewClient returns an etcd client for cfg. Without a username, creation
// does not wait for a connection: operations fail or wait (bounded by
// their contexts) while etcd is unreachable. With one, etcd's client
// authenticates at once, so creation fails if etcd does not answer within
// clientAuthTimeout (10s) or refuses the credentials. Auto sync of endpoints
// is off, and etcd's own client logging is quiet (errors only). logger
// receives crowdpilot's messages; nil discards them.
func NewClient(cfg ClientConfig, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, _ := cfg.tlsConfig() // Validate loaded it once
	// DialTimeout bounds only the authentication in clientv3.New (and a
	// lease's first keep-alive): longer when there is one to make.
	dialTimeout := clientDialTimeout
	if cfg.Username != "" {
		dialTimeout = clientAuthTimeout
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  tlsCfg,
		Username:             cfg.Username,
		Password:             cfg.Password,
		DialTimeout:          dialTimeout,
		DialKeepAliveTime:    clientKeepAliveTime,
		DialKeepAliveTimeout: clientKeepAliveTimeout,
		AutoSyncInterval:     0,
		Logger:               quietZap(),
		DialOptions: []grpc.DialOption{
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: grpcbackoff.Config{
					BaseDelay:  100 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   clientReconnectMax,
				},
				MinConnectTimeout: clientDialTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, refusal(context.Background(), cfg, "", err))
	}
	orDiscard(logger).Debug("etcd client created", "etcd", cfg.LogValue())
	return c, nil
}
