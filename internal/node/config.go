package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// Config configures one node. Zero fields mean the defaults of
// DefaultConfig; Validate checks the relations between fields.
type Config struct {
	// ID names the node in the cluster; unique. Required.
	ID string
	// Zone is the node's failure domain (routing prefers the same zone).
	Zone string
	// Cluster names the cluster; keys live under /crowdpilot/<cluster>/.
	Cluster string
	// Etcd lists the etcd client URLs. Required.
	Etcd []string
	// Listen is the data listener address (the cached HTTP service).
	Listen string
	// Admin is the admin listener address (/metrics, /healthz, /api/v1).
	Admin string
	// AdvertiseAddr and AdvertiseAdmin are what peers dial; default the
	// bound listener addresses.
	AdvertiseAddr, AdvertiseAdmin string
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
	// DefaultTTL is the freshness of cacheable responses that give none.
	// Default 60s.
	DefaultTTL time.Duration
	// StaleWhileRevalidate and StaleIfError apply when a response neither
	// sets nor forbids them. Defaults 10s and 1h (Varnish-style grace).
	StaleWhileRevalidate, StaleIfError time.Duration
	// Prefresh is the fraction of the TTL after which a hit also refreshes
	// in the background. Default 0.9; 1 disables prefresh.
	Prefresh float64

	// OriginTimeout bounds one origin fetch including its body. Default 2.5s.
	OriginTimeout time.Duration
	// OriginMaxConcurrency caps the adaptive origin concurrency limit.
	// Default 64.
	OriginMaxConcurrency uint
	// ForwardTimeout bounds waiting for a peer's response headers; it must
	// exceed OriginTimeout. Default OriginTimeout + 1s.
	ForwardTimeout time.Duration

	// MaxHeaderBytes bounds a request's header block (431 beyond). Default 32 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes bounds pass-through request bodies (413 beyond). Default 1 MiB.
	MaxBodyBytes int64
	// MaxInflight bounds data requests served at once; beyond it a request
	// gets 503 with Retry-After at once. Default 10000.
	MaxInflight int64
	// RejectUnsafe answers 405 to methods other than GET and HEAD instead of
	// passing them to the origin.
	RejectUnsafe bool

	// NearCopy configures the near copies routers keep of objects that are
	// hot at them (zero fields: the defaults; see NearCopyConfig).
	NearCopy NearCopyConfig

	// PurgeMaxDisconnect bounds how long the node trusts its cache while it
	// cannot see the purge log: beyond it, entries older than the bound are
	// served only as stale while revalidating. Default 10s.
	PurgeMaxDisconnect time.Duration

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

	// MemberTTL is the lease TTL of the membership record. Default 5s.
	MemberTTL time.Duration
	// ShutdownGrace bounds finishing in-flight requests on shutdown. Default 10s.
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
		Cluster:              "default",
		Listen:               "127.0.0.1:8080",
		Admin:                "127.0.0.1:9080",
		StoreBytes:           256 << 20,
		MaxObjectBytes:       8 << 20,
		DefaultTTL:           60 * time.Second,
		StaleWhileRevalidate: 10 * time.Second,
		StaleIfError:         time.Hour,
		Prefresh:             0.9,
		OriginTimeout:        2500 * time.Millisecond,
		OriginMaxConcurrency: 64,
		MaxHeaderBytes:       32 << 10,
		MaxBodyBytes:         1 << 20,
		MaxInflight:          10000,
		MemberTTL:            5 * time.Second,
		PurgeMaxDisconnect:   10 * time.Second,
		HeatWindow:           250 * time.Millisecond,
		ReportInterval:       250 * time.Millisecond,
		ElectionTTL:          5 * time.Second,
		ShutdownGrace:        10 * time.Second,
		NearCopy:             NearCopyConfig{RPS: 20, TTL: 2 * time.Second, Share: 0.25},
	}
}

// withDefaults fills zero fields from DefaultConfig.
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
	if c.StoreBytes == 0 {
		c.StoreBytes = d.StoreBytes
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = d.MaxObjectBytes
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = d.DefaultTTL
	}
	if c.StaleWhileRevalidate == 0 {
		c.StaleWhileRevalidate = d.StaleWhileRevalidate
	}
	if c.StaleIfError == 0 {
		c.StaleIfError = d.StaleIfError
	}
	if c.Prefresh == 0 {
		c.Prefresh = d.Prefresh
	}
	if c.OriginTimeout == 0 {
		c.OriginTimeout = d.OriginTimeout
	}
	if c.OriginMaxConcurrency == 0 {
		c.OriginMaxConcurrency = d.OriginMaxConcurrency
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
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.HeatWindow == 0 {
		c.HeatWindow = d.HeatWindow
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = d.ReportInterval
	}
	if c.ElectionTTL == 0 {
		c.ElectionTTL = d.ElectionTTL
	}
	if c.PurgeMaxDisconnect == 0 {
		c.PurgeMaxDisconnect = d.PurgeMaxDisconnect
	}
	if c.MemberTTL == 0 {
		c.MemberTTL = d.MemberTTL
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	if c.NearCopy.RPS == 0 {
		c.NearCopy.RPS = d.NearCopy.RPS
	}
	if c.NearCopy.TTL == 0 {
		c.NearCopy.TTL = d.NearCopy.TTL
	}
	if c.NearCopy.Share == 0 {
		c.NearCopy.Share = d.NearCopy.Share
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

// Validate reports the first problem with c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if len(c.Etcd) == 0 {
		errs = append(errs, errors.New("etcd endpoints are required"))
	}
	if u, err := url.Parse(c.Origin); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("origin %q must be an http(s) URL with a host", c.Origin))
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
		"purge max disconnect": c.PurgeMaxDisconnect,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v must not be negative", name, d))
		}
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
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d must not be negative", c.MaxBodyBytes))
	}
	return errors.Join(errs...)
}
