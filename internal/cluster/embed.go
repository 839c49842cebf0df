package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// DefaultEmbedName is the etcd member name used when EmbedConfig.Name is empty.
const DefaultEmbedName = "crowdpilot"

// DefaultCompactionRetention is how much history the embedded server keeps
// (periodic auto-compaction) when EmbedConfig.CompactionRetention is zero.
const DefaultCompactionRetention = time.Hour

// EmbedConfig configures an embedded single-member etcd server.
type EmbedConfig struct {
	// Dir is the data directory. Required. Starting again on the same Dir
	// (with the same addresses) resumes the same store.
	Dir string
	// Name is the etcd member name. Empty means DefaultEmbedName.
	Name string
	// ClientAddr is the host:port clients connect to. Empty, or port 0,
	// picks a free port (on 127.0.0.1 when the host is empty).
	ClientAddr string
	// PeerAddr is the host:port for the raft peer listener, chosen like
	// ClientAddr.
	PeerAddr string
	// CompactionRetention is the history kept by periodic auto-compaction.
	// Zero means DefaultCompactionRetention; negative disables compaction.
	CompactionRetention time.Duration
	// CertFile and KeyFile, if set, are the PEM server certificate and key:
	// clients connect over TLS (https://) instead of plaintext.
	CertFile, KeyFile string
	// ClientCAFile, if set (with CertFile), requires every client to present
	// a certificate signed by a CA in this PEM file (etcd's
	// --client-cert-auth with --trusted-ca-file).
	ClientCAFile string
	// BcryptCost is the cost of the password hashes of etcd users (etcd's
	// --bcrypt-cost). Zero means etcd's default (10); tests that enable
	// authentication use 4, the least, so a login is not seconds of CPU on
	// a busy machine.
	BcryptCost uint
	// NoFsync skips fsync of etcd's log and database (etcd's
	// --unsafe-no-fsync): a machine crash can lose acknowledged writes. For
	// tests and throwaway clusters only, where a busy shared disk must not
	// stall every lease renewal.
	NoFsync bool
	// Logger receives crowdpilot's own messages; nil discards them. etcd
	// itself logs errors only, to stderr.
	Logger *slog.Logger
}

// Embedded is a running embedded etcd server.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
	peerURL   string
	log       *slog.Logger
	closing   *atomic.Bool // mutes etcd's logger during Close
	closeOnce sync.Once
}

// StartEmbedded starts an embedded etcd server and waits until it is ready to
// serve clients, or until ctx is done (then the server is stopped and ctx's
// error returned).
func StartEmbedded(ctx context.Context, cfg EmbedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded etcd: Dir is required")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultEmbedName
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") || (cfg.ClientCAFile != "" && cfg.CertFile == "") {
		return nil, errors.New("embedded etcd: CertFile and KeyFile go together, and ClientCAFile needs them")
	}
	log := orDiscard(cfg.Logger)

	// A picked port may be taken by someone else before etcd binds it;
	// pick again in that case. Explicit ports are tried once.
	auto := isAuto(cfg.ClientAddr) || isAuto(cfg.PeerAddr)
	attempts := 1
	if auto {
		attempts = 3
	}
	var lastErr error
	for range attempts {
		clientURL, err := listenURL(cfg.ClientAddr)
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: client address %q: %w", cfg.ClientAddr, err)
		}
		peerURL, err := listenURL(cfg.PeerAddr)
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: peer address %q: %w", cfg.PeerAddr, err)
		}
		e, err := start(ctx, cfg, clientURL, peerURL)
		if err == nil {
			e.log = log
			log.Info("embedded etcd ready", "name", cfg.Name, "dir", cfg.Dir, "client_url", e.clientURL, "peer_url", e.peerURL)
			return e, nil
		}
		lastErr = err
		if ctx.Err() != nil || !auto {
			break
		}
		log.Warn("embedded etcd failed to start; retrying with new ports", "err", err)
	}
	return nil, lastErr
}

func start(ctx context.Context, cfg EmbedConfig, clientURL, peerURL *url.URL) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", cfg.Dir, err)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	if cfg.CertFile != "" {
		clientURL = &url.URL{Scheme: "https", Host: clientURL.Host}
		ec.ClientTLSInfo = transport.TLSInfo{
			CertFile:       cfg.CertFile,
			KeyFile:        cfg.KeyFile,
			TrustedCAFile:  cfg.ClientCAFile,
			ClientCertAuth: cfg.ClientCAFile != "",
		}
	}
	if cfg.BcryptCost != 0 {
		ec.BcryptCost = cfg.BcryptCost
	}
	ec.UnsafeNoFsync = cfg.NoFsync
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*advertise(clientURL)}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*advertise(peerURL)}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.Logger = "zap"
	ec.LogLevel = "error"
	closing := new(atomic.Bool)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(mutedZap(closing))
	// Let clients ping as often as every second (NewClient uses 5s).
	ec.GRPCKeepAliveMinTime = time.Second
	switch r := cfg.CompactionRetention; {
	case r == 0:
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = DefaultCompactionRetention.String()
	case r > 0:
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = r.String()
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &Embedded{etcd: e, clientURL: ec.AdvertiseClientUrls[0].String(), peerURL: ec.AdvertisePeerUrls[0].String(), closing: closing}, nil
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", cfg.Dir, err)
	case <-ctx.Done():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: waiting for ready: %w", cfg.Dir, ctx.Err())
	}
}

// ClientURL is the URL clients use, e.g. http://127.0.0.1:23791 (https://
// with CertFile).
func (e *Embedded) ClientURL() string { return e.clientURL }

// PeerURL is the raft peer URL. Start again with the host:port of ClientURL
// and PeerURL (and the same Dir) to resume the same server.
func (e *Embedded) PeerURL() string { return e.peerURL }

// Err reports a fatal server error; it is closed once the server has stopped.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the server and waits for it. It is safe to call more than once.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.etcd.Close()
		e.log.Info("embedded etcd stopped", "client_url", e.clientURL)
	})
}

// isAuto reports whether addr asks for a picked port.
func isAuto(addr string) bool {
	if addr == "" {
		return true
	}
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// listenURL turns a host:port into an http URL, replacing an empty host by
// 127.0.0.1 and port 0 by a currently free port.
func listenURL(addr string) (*url.URL, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "0" {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		if err := ln.Close(); err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}

// advertise returns the URL to publish for a listen URL: an unspecified
// host (0.0.0.0, ::) is advertised as loopback.
func advertise(u *url.URL) *url.URL {
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsUnspecified() {
		return u
	}
	return &url.URL{Scheme: u.Scheme, Host: net.JoinHostPort("127.0.0.1", u.Port())}
}
