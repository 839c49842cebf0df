package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// Config configures one node. Start from DefaultConfig: a zero field means
// the default only where zero is never a meaningful value (addresses, sizes,
// timeouts, intervals); the freshness and grace settings, MaxBodyBytes and
// ShutdownGrace mean zero when zero, and Prefresh and PurgeMaxDisconnect
// must be set (Validate rejects zero). Validate checks the relations
// between fields.
type Config struct {
	// ID names the node in the cluster; unique. Required.
	ID string
	// Zone is the node's failure domain (routing prefers the same zone).
	Zone string
	// Cluster names the cluster; keys live under /crowdpilot/<cluster>/.
	Cluster string
	// Etcd lists the etcd client URLs. Required.
	Etcd []string
	// EtcdCACert, EtcdCert and EtcdKey are PEM files for TLS to etcd: the
	// CA of etcd's server certificate (empty: the system's roots, for
	// https endpoints) and this node's client certificate and key (both or
	// neither). See cluster.ClientConfig.
	EtcdCACert, EtcdCert, EtcdKey string
	// EtcdUsername and EtcdPassword authenticate to an etcd with auth
	// enabled (both or neither). Never logged.
	EtcdUsername, EtcdPassword string
	// Listen is the data listener address (the cached HTTP service).
	Listen string
	// Admin is the admin listener address (/metrics, /healthz, /api/v1).
	Admin string
	// AdvertiseAddr and AdvertiseAdmin are what peers dial; default the
	// bound listener addresses.
	AdvertiseAddr, AdvertiseAdmin string
	// PeerCert, PeerKey and PeerCACert turn on node-to-node TLS (all three
	// or none): the node then serves its peers on a listener of its own,
	// PeerListen, with mutual TLS (a peer must present a certificate the
	// CA signed), and dials every peer there over https, verifying its
	// certificate against PeerCACert. Forwards, fills, peeks, peer
	// invalidations and node-to-node admin calls all go that way; the data
	// and admin listeners then accept neither hop nor peer proofs. The
	// certificate serves both ends (server and client auth) and must name
	// the host of AdvertisePeer. Empty: peers talk plain HTTP on the data
	// and admin listeners, as without TLS.
	PeerCert, PeerKey, PeerCACert string
	// PeerListen is the peer listener address (with PeerCert). Default
	// 127.0.0.1:7080.
	PeerListen string
	// AdvertisePeer is the peer address other nodes dial; default the bound
	// peer listener address.
	AdvertisePeer string
	// Origin is the origin's base URL. Required.
	Origin string
	// AdminToken guards mutating admin calls and node-to-node calls
	// (Bearer); every node of a cluster needs the same one. Empty disables
	// purges and requires DisableAutopilot.
	AdminToken string

	// Tenants declares the tenants (--tenants FILE); nil means none, and
	// every key is owned among all nodes as before. Validated by
	// tenant.Parse.
	Tenants *tenant.Config
	// Labels are this node's labels (--labels hw=dedicated,rack=r1), in
	// its member record: tenants isolated on labels use only nodes that
	// carry them.
	Labels map[string]string
	// Capacity configures the capacity manager that sizes the tenants'
	// node sets (run by the autopilot leader). Nil means
	// capacity.DefaultConfig().
	Capacity *capacity.Config

	// StoreBytes bounds the in-memory store. Default 256 MiB.
	StoreBytes int64
	// MaxObjectBytes: larger objects stream through uncached. Default 8 MiB.
	MaxObjectBytes int64
	// DefaultTTL is the freshness of heuristically cacheable responses
	// that give no explicit freshness and no Last-Modified (with
	// Last-Modified the RFC 9111 §4.2.2 heuristic applies: 10% of its age,
	// at most a day). Default 0: such responses are stored always stale
	// and revalidated. A positive value is an operator opt-in that RFC
	// 9111 does not make; Strict ignores it.
	DefaultTTL time.Duration
	// StaleWhileRevalidate and StaleIfError are the operator's grace:
	// they apply when a response neither sets nor forbids them (RFC 9111
	// §4.2.4 lets a cache serve stale only with permission; this is that
	// permission, Varnish-style). Defaults 10s and 1h; zero means none.
	// Strict ignores them.
	StaleWhileRevalidate, StaleIfError time.Duration
	// IgnoreClientRevalidate ignores the request directives that only send
	// the cache to the origin sooner (no-cache, Pragma: no-cache, max-age,
	// min-fresh) for origin protection, as Varnish and nginx do: one
	// client's reload cannot push a crowd's object back to the origin.
	// Default true; Strict ignores it (client directives are honoured).
	IgnoreClientRevalidate bool
	// Strict is RFC 9111 strict: no default TTL, no operator grace, and
	// clients' request directives honoured. It removes every deviation
	// the other defaults make (see the README).
	Strict bool
	// Prefresh is the fraction of the TTL after which a hit also refreshes
	// in the background. Default 0.9; 1 disables prefresh; must be in
	// (0, 1].
	Prefresh float64

	// OriginTimeout bounds one origin fetch including its body. Default 2.5s.
	OriginTimeout time.Duration
	// OriginMaxConcurrency caps the adaptive origin concurrency limit.
	// Default 64.
	OriginMaxConcurrency uint
	// OriginMinConcurrency is the floor of the adaptive origin concurrency
	// limit, which starts at 16 (or at the floor, or the cap). Equal to
	// OriginMaxConcurrency it makes the limit fixed: a burst of that many
	// distinct misses is never shed, however the origin's latency moves.
	// Default 1; at most OriginMaxConcurrency.
	OriginMinConcurrency uint
	// OriginQueueWait is how long a fetch that finds the origin limit full
	// may wait for a permit (in a queue of at most four times the limit)
	// before it is shed with 503: a burst of distinct misses is absorbed,
	// a slow origin is not queued on for long. The wait is part of the
	// fetch, within OriginTimeout. Zero: shed at once. Default 250 ms.
	OriginQueueWait time.Duration
	// ForwardTimeout bounds waiting for a peer's response headers; it must
	// exceed OriginTimeout. Default OriginTimeout + 1s.
	ForwardTimeout time.Duration

	// MaxHeaderBytes bounds a request's header block (431 beyond). Default 32 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes bounds pass-through request bodies (413 beyond); 0
	// admits only empty bodies. Default 1 MiB.
	MaxBodyBytes int64
	// MaxInflight bounds data requests served at once; beyond it a request
	// gets 503 with Retry-After at once. Default 10000.
	MaxInflight int64
	// ReadHeaderTimeout, ReadTimeout (header and body), WriteTimeout and
	// IdleTimeout bound what a data client may hold: a connection past
	// one is cut and counted. Defaults 5s, 30s, 60s, 60s; negative: none.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// AdminOpenKeys shows full cache keys, query values included, in the
	// read-only admin views (/api/v1/hot, /api/v1/events) to callers
	// without the token. Default false: values are redacted.
	AdminOpenKeys bool
	// IgnoreCookies names cookies deleted from requests where they enter (a
	// trailing '*' matches a prefix), e.g. analytics cookies: a request
	// with any other Cookie is shared only when the response says so.
	IgnoreCookies []string
	// AllowedHosts are the Host values served; others get 421. Empty means
	// the origin's host and this node's own addresses (and localhost on its
	// port). Without KeyHost all of them are one site: keyed and fetched
	// under the origin's host.
	AllowedHosts []string
	// KeyHost makes the request's Host part of the cache key, so one
	// cluster fronts several sites (the AllowedHosts, which must be given):
	// each site's objects are keyed, owned, purged and fetched apart, and
	// every request to the origin carries that site's Host (the origin is a
	// virtual-hosted server), still sent to Origin. Default false: one site.
	// Every node of a cluster must agree.
	KeyHost bool
	// RejectUnsafe answers 405 to methods other than GET and HEAD instead of
	// passing them to the origin.
	RejectUnsafe bool
	// LeanHTTP reads simple requests (GET and HEAD, HTTP/1.1, no body) on
	// the data port with crowdpilot's own HTTP/1.1 front (internal/h1),
	// which answers a cached object in one write; every other request,
	// and its connection from then on, goes to net/http. False: net/http
	// reads everything.
	LeanHTTP bool

	// PeerLimit bounds forwards in flight to each peer with an adaptive
	// limit; a request finding every member of R(k) at its limit gets what
	// this node holds, or a fast 503 (zero fields: route's defaults).
	PeerLimit route.PeerLimit

	// NearCopy configures the near copies routers keep of objects that are
	// hot at them (see NearCopyConfig); a zero TTL or Share means none.
	NearCopy NearCopyConfig

	// PurgeMaxDisconnect bounds how long the node trusts its cache while it
	// cannot see the purge log: beyond it, entries older than the bound are
	// served only as stale while revalidating. Default 10s; must be
	// positive.
	PurgeMaxDisconnect time.Duration
	// InvalidateInterval is how often this node appends the invalidations of
	// unsafe requests to the purge log: within it, repeated writes to one
	// URL make one entry. Default 250ms.
	InvalidateInterval time.Duration

	// DisableAutopilot turns off heat reports and leadership on this node:
	// it still routes to replicas other leaders create.
	DisableAutopilot bool
	// Autopilot holds the policy thresholds (zero fields: its defaults).
	Autopilot autopilot.Config
	// HeatWindow is the time constant of the per-key rate estimate: shorter
	// reacts faster, longer is steadier. Default 250ms.
	HeatWindow time.Duration
	// ReportInterval is how often the node sends its heat report to the
	// leader, and how often the leader decides. Together they are most of
	// the time from a crowd's first second to its replicas. Default 250ms.
	ReportInterval time.Duration
	// ElectionTTL is the autopilot election's lease TTL: a dead leader is
	// replaced within it. Default 5s.
	ElectionTTL time.Duration
	// SharesProcess says other nodes run in this process (crowdpilot up,
	// tests): the process's CPU is not this node's, so reports carry none
	// and placement weighs in-flight requests only.
	SharesProcess bool
	// MaxObjectSettings bounds the operators' object settings (pins and
	// caps on keys' leased replicas, /api/v1/objects) the cluster holds: a
	// new one beyond it is refused with 409. Every node should use the
	// same. Default 1000 (cluster.DefaultMaxObjects); 0 allows none.
	MaxObjectSettings int

	// MemberTTL is the lease TTL of the membership record. Default 5s.
	MemberTTL time.Duration
	// ShutdownGrace bounds finishing in-flight requests on shutdown.
	// Default 10s; 0 does not wait.
	ShutdownGrace time.Duration

	// Logger receives the node's logs. Nil means discard.
	Logger *slog.Logger
	// Registry receives the node's metrics. Nil means a new registry.
	Registry *prometheus.Registry
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Cluster:                "default",
		Listen:                 "127.0.0.1:8080",
		Admin:                  "127.0.0.1:9080",
		StoreBytes:             256 << 20,
		MaxObjectBytes:         8 << 20,
		StaleWhileRevalidate:   10 * time.Second,
		StaleIfError:           time.Hour,
		IgnoreClientRevalidate: true,
		Prefresh:               0.9,
		OriginTimeout:          2500 * time.Millisecond,
		OriginMaxConcurrency:   64,
		OriginMinConcurrency:   1,
		OriginQueueWait:        250 * time.Millisecond,
		MaxHeaderBytes:         32 << 10,
		LeanHTTP:               true,
		MaxBodyBytes:           1 << 20,
		MaxInflight:            10000,
		MemberTTL:              5 * time.Second,
		PurgeMaxDisconnect:     10 * time.Second,
		HeatWindow:             250 * time.Millisecond,
		ReportInterval:         250 * time.Millisecond,
		ElectionTTL:            5 * time.Second,
		MaxObjectSettings:      cluster.DefaultMaxObjects,
		ShutdownGrace:          10 * time.Second,
		NearCopy:               NearCopyConfig{RPS: 20, TTL: 2 * time.Second, Share: 0.25, ReserveShare: 1.0 / 16},
		InvalidateInterval:     250 * time.Millisecond,
		ReadHeaderTimeout:      5 * time.Second,
		ReadTimeout:            30 * time.Second,
		WriteTimeout:           60 * time.Second,
		IdleTimeout:            60 * time.Second,
		PeerListen:             "127.0.0.1:7080",
	}
}

// withDefaults fills from DefaultConfig the zero fields for which zero is
// never a meaningful value. Fields where zero means zero (DefaultTTL, the
// grace windows, MaxBodyBytes, ShutdownGrace, the booleans) or is invalid
// (Prefresh, PurgeMaxDisconnect: an explicit 0 must be an error, not a
// silent default) are left as they are: callers start from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&c.Cluster, d.Cluster)
	set(&c.Listen, d.Listen)
	set(&c.Admin, d.Admin)
	set(&c.PeerListen, d.PeerListen)
	if c.StoreBytes == 0 {
		c.StoreBytes = d.StoreBytes
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = d.MaxObjectBytes
	}
	if c.OriginTimeout == 0 {
		c.OriginTimeout = d.OriginTimeout
	}
	if c.OriginMaxConcurrency == 0 {
		c.OriginMaxConcurrency = d.OriginMaxConcurrency
	}
	if c.OriginMinConcurrency == 0 {
		c.OriginMinConcurrency = d.OriginMinConcurrency
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = c.OriginTimeout + time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.HeatWindow == 0 {
		c.HeatWindow = d.HeatWindow
	}
	if c.NearCopy.RPS == 0 {
		c.NearCopy.RPS = d.NearCopy.RPS
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = d.ReportInterval
	}
	if c.ElectionTTL == 0 {
		c.ElectionTTL = d.ElectionTTL
	}
	if c.InvalidateInterval == 0 {
		c.InvalidateInterval = d.InvalidateInterval
	}
	for _, f := range []struct {
		v *time.Duration
		d time.Duration
	}{
		{&c.ReadHeaderTimeout, d.ReadHeaderTimeout}, {&c.ReadTimeout, d.ReadTimeout},
		{&c.WriteTimeout, d.WriteTimeout}, {&c.IdleTimeout, d.IdleTimeout},
	} {
		if *f.v == 0 { // a zero timeout would cut every connection: never a value
			*f.v = f.d
		}
	}
	if c.MemberTTL == 0 {
		c.MemberTTL = d.MemberTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// cacheDefaults are the freshness defaults the node stores entries with:
// none under Strict.
func (c Config) cacheDefaults() httpcache.Defaults {
	if c.Strict {
		return httpcache.Defaults{}
	}
	return httpcache.Defaults{
		TTL:                  c.DefaultTTL,
		StaleWhileRevalidate: c.StaleWhileRevalidate,
		StaleIfError:         c.StaleIfError,
		StaleUnderSMaxAge:    true,
	}
}

// requestPolicy is how the node weighs clients' request directives.
func (c Config) requestPolicy() httpcache.RequestPolicy {
	return httpcache.RequestPolicy{
		Prefresh:               c.Prefresh,
		IgnoreClientRevalidate: c.IgnoreClientRevalidate && !c.Strict,
	}
}

// etcdClient is how the node reaches etcd.
func (c Config) etcdClient() cluster.ClientConfig {
	return cluster.ClientConfig{
		Endpoints: c.Etcd,
		CACert:    c.EtcdCACert, Cert: c.EtcdCert, Key: c.EtcdKey,
		Username: c.EtcdUsername, Password: c.EtcdPassword,
	}
}

// CheckConfig reports the problem New would find in c, without building
// anything: for callers that check all their input before they start
// what the node needs (the embedded etcd of crowdpilot up).
func CheckConfig(c Config) error { return c.withDefaults().Validate() }

// Validate reports the first problem with c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if err := c.etcdClient().Validate(); err != nil {
		errs = append(errs, err) // "etcd endpoints are required", "etcd cacert ...", ...
	}
	if p, err := c.peerTLS(); err != nil {
		errs = append(errs, err) // "peer cert ...", "peer cacert ..."
	} else if p != nil {
		for _, a := range []struct{ name, v string }{{"peer listen", c.PeerListen}, {"advertise peer", c.AdvertisePeer}} {
			if _, port, err := net.SplitHostPort(a.v); a.v != "" && (err != nil || port == "") {
				errs = append(errs, fmt.Errorf("%s %q is not host:port", a.name, a.v))
			}
		}
	}
	if u, err := url.Parse(c.Origin); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("origin %q must be an http(s) URL with a host", c.Origin))
	}
	for _, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/?#@ \t") {
			errs = append(errs, fmt.Errorf("allowed hosts: %q is not a host[:port]", h))
		}
	}
	if c.KeyHost && len(c.AllowedHosts) == 0 {
		errs = append(errs, errors.New("key host needs allowed hosts: the sites it keys apart"))
	}
	if c.StoreBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("store bytes %d must be at least 1 MiB", c.StoreBytes))
	}
	if c.MaxObjectBytes <= 0 || c.MaxObjectBytes > c.StoreBytes {
		errs = append(errs, fmt.Errorf("max object bytes %d must be in (0, store bytes %d]", c.MaxObjectBytes, c.StoreBytes))
	}
	if c.Prefresh <= 0 || c.Prefresh > 1 {
		errs = append(errs, fmt.Errorf("prefresh %v must be in (0, 1]", c.Prefresh))
	}
	for name, d := range map[string]time.Duration{
		"default ttl": c.DefaultTTL, "stale-while-revalidate": c.StaleWhileRevalidate,
		"stale-if-error": c.StaleIfError, "shutdown grace": c.ShutdownGrace,
		"invalidate interval": c.InvalidateInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v must not be negative", name, d))
		}
	}
	if c.PurgeMaxDisconnect <= 0 {
		errs = append(errs, fmt.Errorf("purge max disconnect %v must be positive (the purge follower needs time to confirm its position)", c.PurgeMaxDisconnect))
	}
	if c.OriginQueueWait < 0 {
		errs = append(errs, fmt.Errorf("origin queue wait %v must not be negative", c.OriginQueueWait))
	}
	if c.OriginMinConcurrency > c.OriginMaxConcurrency {
		errs = append(errs, fmt.Errorf("origin min concurrency %d must not exceed origin max concurrency %d", c.OriginMinConcurrency, c.OriginMaxConcurrency))
	}
	if c.OriginTimeout <= 0 {
		errs = append(errs, fmt.Errorf("origin timeout %v must be positive", c.OriginTimeout))
	}
	if c.ForwardTimeout <= c.OriginTimeout {
		errs = append(errs, fmt.Errorf("forward timeout %v must exceed origin timeout %v, or a slow origin looks like a dead peer and objects are fetched twice", c.ForwardTimeout, c.OriginTimeout))
	}
	if c.MemberTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("member ttl %v must be at least 2s", c.MemberTTL))
	}
	if c.HeatWindow < 10*time.Millisecond || c.ReportInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("heat window %v and report interval %v must be at least 10ms", c.HeatWindow, c.ReportInterval))
	}
	if c.ElectionTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("election ttl %v must be at least 2s", c.ElectionTTL))
	}
	if !c.DisableAutopilot && c.AdminToken == "" {
		errs = append(errs, errors.New("the autopilot needs an admin token shared by all nodes (--admin-token) for node-to-node calls; set one, or run with --autopilot=false"))
	}
	if err := c.Autopilot.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("autopilot: %w", err))
	}
	if c.Capacity != nil {
		if err := c.Capacity.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxHeaderBytes < 1024 {
		errs = append(errs, fmt.Errorf("max header bytes %d must be at least 1024", c.MaxHeaderBytes))
	}
	if c.MaxInflight < 1 {
		errs = append(errs, fmt.Errorf("max inflight %d must be at least 1", c.MaxInflight))
	}
	if c.NearCopy.RPS <= 0 || c.NearCopy.TTL < 0 || c.NearCopy.Share < 0 || c.NearCopy.Share > 1 {
		errs = append(errs, fmt.Errorf("near copies: rate %v must be positive, ttl %v not negative, share %v in [0, 1]", c.NearCopy.RPS, c.NearCopy.TTL, c.NearCopy.Share))
	}
	if r := c.NearCopy.ReserveShare; r < 0 || r > 1 || (c.NearCopy.Share <= 1 && c.NearCopy.Share+r > 1) {
		errs = append(errs, fmt.Errorf("reserves (--reserve-share): share %v must be in [0, 1], and with the near-copy share %v at most 1", r, c.NearCopy.Share))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d must not be negative", c.MaxBodyBytes))
	}
	if c.MaxObjectSettings < 0 {
		errs = append(errs, fmt.Errorf("max object settings %d must not be negative", c.MaxObjectSettings))
	}
	return errors.Join(errs...)
}
