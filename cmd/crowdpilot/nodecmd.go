package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/node"
)

// nodeFlags are the flags of one node, shared by `node` and `up` (where they
// apply to every node).
type nodeFlags struct {
	id, zone, cluster, etcd, listen, admin, advertise, advertiseAdmin, origin, adminToken      string
	storeBytes, maxObjectBytes, maxBodyBytes                                                   byteSize
	defaultTTL, swr, sie, originTimeout, forwardTimeout, originQueueWait                       time.Duration
	memberTTL, shutdownGrace, purgeMaxDisconnect                                               time.Duration
	prefresh                                                                                   float64
	originMaxConcurrency, originMinConcurrency, maxHeaderBytes, maxInflight, maxObjectSettings int
	rejectUnsafe, leanHTTP, autopilotOn, strict, ignoreClientRevalidate                        bool
	ap                                                                                         autopilot.Config
	heatWindow, electionTTL                                                                    time.Duration
	near                                                                                       node.NearCopyConfig
	logFormat, logLevel                                                                        string
	allowedHosts                                                                               string
	keyHost                                                                                    bool
	adminOpenKeys                                                                              bool
	ignoreCookies                                                                              string
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout                                  time.Duration
	tenants                                                                                    tenantsFlag
	labels                                                                                     labelsFlag
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	d := node.DefaultConfig()
	fs.StringVar(&f.id, "id", "", "node ID, unique in the cluster (if empty, the data listen address)")
	fs.StringVar(&f.zone, "zone", "", "node's zone; routing prefers replicas in the same zone")
	fs.StringVar(&f.cluster, "cluster", d.Cluster, "cluster name; etcd keys live under /crowdpilot/<cluster>/")
	fs.StringVar(&f.etcd, "etcd", "", "comma-separated etcd client URLs")
	fs.StringVar(&f.listen, "listen", d.Listen, "data listener host:port (the cached HTTP service)")
	fs.StringVar(&f.admin, "admin", d.Admin, "admin listener host:port (/metrics, /healthz, /readyz, /api/v1)")
	fs.StringVar(&f.advertise, "advertise", "", "data address peers dial (if empty, the listen address)")
	fs.StringVar(&f.advertiseAdmin, "advertise-admin", "", "admin address peers dial (if empty, the admin listen address)")
	fs.StringVar(&f.origin, "origin", "", "origin base URL, e.g. http://127.0.0.1:9000")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token for mutating admin calls (purge)")
	f.storeBytes = byteSize(d.StoreBytes)
	fs.Var(&f.storeBytes, "store-bytes", "in-memory store bound, e.g. 256MiB or 2GiB")
	f.maxObjectBytes = byteSize(d.MaxObjectBytes)
	fs.Var(&f.maxObjectBytes, "max-object-bytes", "larger objects stream through uncached")
	f.maxBodyBytes = byteSize(d.MaxBodyBytes)
	fs.Var(&f.maxBodyBytes, "max-body-bytes", "largest request body passed to the origin; 413 beyond")
	fs.DurationVar(&f.defaultTTL, "default-ttl", d.DefaultTTL, "freshness of heuristically cacheable responses with no explicit freshness and no Last-Modified (0: none, RFC 9111)")
	fs.DurationVar(&f.swr, "stale-while-revalidate", d.StaleWhileRevalidate, "operator grace: serve stale while refreshing, when the response neither sets nor forbids it (0: none)")
	fs.DurationVar(&f.sie, "stale-if-error", d.StaleIfError, "operator grace: serve stale when the origin fails, when the response neither sets nor forbids it (0: none)")
	fs.BoolVar(&f.ignoreClientRevalidate, "ignore-client-revalidate", d.IgnoreClientRevalidate, "ignore clients' no-cache, max-age and min-fresh request directives (origin protection)")
	fs.BoolVar(&f.strict, "strict", d.Strict, "RFC 9111 strict: no default TTL, no operator grace, clients' request directives honoured")
	fs.Float64Var(&f.prefresh, "prefresh", d.Prefresh, "fraction of the TTL after which hits also refresh in the background (1 = off)")
	fs.DurationVar(&f.originTimeout, "origin-timeout", d.OriginTimeout, "bound on one origin fetch, body included")
	fs.DurationVar(&f.originQueueWait, "origin-queue-wait", d.OriginQueueWait, "how long a fetch may wait for a slot when the origin limit is full before it is shed with 503 (0: shed at once)")
	fs.IntVar(&f.originMaxConcurrency, "origin-max-concurrency", int(d.OriginMaxConcurrency), "ceiling of the adaptive origin concurrency limit per node")
	fs.IntVar(&f.originMinConcurrency, "origin-min-concurrency", int(d.OriginMinConcurrency), "floor of the adaptive origin concurrency limit per node (equal to the ceiling: a fixed limit)")
	fs.DurationVar(&f.forwardTimeout, "forward-timeout", 0, "wait for a peer's response headers before failing over (if 0, origin-timeout + 1s)")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", d.MaxHeaderBytes, "largest request header block; 431 beyond")
	fs.IntVar(&f.maxInflight, "max-inflight", int(d.MaxInflight), "data requests served at once; beyond it a fast 503 with Retry-After")
	fs.StringVar(&f.allowedHosts, "allowed-hosts", "", "comma-separated Host values served, others get 421 (empty: the origin's host and the node's own addresses)")
	fs.BoolVar(&f.keyHost, "key-host", false, "several sites: the request's Host (one of --allowed-hosts, required) is part of the cache key and is the Host sent to the origin")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", d.ReadHeaderTimeout, "data clients must send a request header within this (negative: no limit)")
	fs.DurationVar(&f.readTimeout, "read-timeout", d.ReadTimeout, "data clients must send a request, body included, within this (negative: no limit)")
	fs.DurationVar(&f.writeTimeout, "write-timeout", d.WriteTimeout, "data clients must read a response within this (negative: no limit)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", d.IdleTimeout, "idle keep-alive data connections are closed after this (negative: no limit)")
	fs.BoolVar(&f.adminOpenKeys, "admin-open-keys", false, "show query values of cache keys in /api/v1/hot and /api/v1/events without the token")
	fs.StringVar(&f.ignoreCookies, "ignore-cookies", "", "comma-separated cookie names (a trailing * matches a prefix) deleted from requests; any other Cookie keeps a response private unless it is public or has s-maxage")
	fs.BoolVar(&f.rejectUnsafe, "reject-unsafe", false, "answer 405 to methods other than GET/HEAD instead of passing them to the origin")
	fs.BoolVar(&f.leanHTTP, "lean-http", d.LeanHTTP, "read simple GET/HEAD requests with crowdpilot's own HTTP/1.1 front (one write per cached answer); false: every request through Go's net/http")
	fs.DurationVar(&f.memberTTL, "member-ttl", d.MemberTTL, "lease TTL of a node's membership record")
	fs.DurationVar(&f.purgeMaxDisconnect, "purge-max-disconnect", d.PurgeMaxDisconnect, "cut off from the purge log longer than this, serve cached entries older than it only as stale while revalidating")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", d.ShutdownGrace, "bound on finishing in-flight requests at shutdown")
	fs.BoolVar(&f.autopilotOn, "autopilot", true, "take part in the autopilot: report heat, stand for leader (false: only route to replicas)")
	apd := autopilot.DefaultConfig()
	fs.Float64Var(&f.ap.TargetRPS, "replica-target-rps", apd.TargetRPS, "request rate one member of a replica set should serve")
	fs.IntVar(&f.ap.MaxReplicas, "max-replicas", apd.MaxReplicas, "most members per object, owner included")
	fs.DurationVar(&f.ap.ReplicaTTL, "replica-ttl", apd.ReplicaTTL, "lease TTL of a replica; renewed while hot, expires when the crowd leaves")
	fs.DurationVar(&f.ap.Cooldown, "scale-cooldown", apd.Cooldown, "least time between scaling a key one way and the other")
	fs.DurationVar(&f.ap.MinInterval, "scale-out-interval", apd.MinInterval, "least time between two scale-outs of one key")
	fs.DurationVar(&f.ap.ScaleInHold, "scale-in-hold", apd.ScaleInHold, "how long a key must stay cool before its replicas are released")
	fs.Float64Var(&f.ap.BudgetPerSecond, "replica-budget", apd.BudgetPerSecond, "cluster-wide new replicas per second")
	fs.IntVar(&f.ap.MaxExtraReplicas, "max-extra-replicas", apd.MaxExtraReplicas, "cap on extra replicas over all objects")
	fs.IntVar(&f.maxObjectSettings, "max-object-settings", d.MaxObjectSettings, "most operator pins and caps on objects (crowdpilot replicas) the cluster holds; the same on every node")
	fs.DurationVar(&f.ap.P99Objective, "replica-p99-objective", 0, "add replicas to a hot object while a member's p99 exceeds this (0: off)")
	fs.Float64Var(&f.ap.ErrorObjective, "replica-error-objective", 0, "add replicas to a hot object while a member's error rate exceeds this fraction (0: off)")
	fs.Float64Var(&f.near.RPS, "near-copy-rps", d.NearCopy.RPS, "a router keeps a near copy of a key it does not own once the key's rate at this node reaches this (requests/s over --heat-window)")
	fs.DurationVar(&f.near.TTL, "near-copy-ttl", d.NearCopy.TTL, "lease of a near copy, also bounded by the object's freshness; renewed from the replica set while hot (0: no near copies)")
	fs.Float64Var(&f.near.Share, "near-copy-share", d.NearCopy.Share, "part of --store-bytes near copies may use (0: no near copies)")
	fs.Float64Var(&f.near.ReserveShare, "reserve-share", d.NearCopy.ReserveShare, "part of --store-bytes for reserves: copies of objects a node relays, served only stale within stale-while-revalidate while it revalidates them (0: none)")
	fs.DurationVar(&f.heatWindow, "heat-window", 250*time.Millisecond, "time constant of per-key rate estimates")
	fs.DurationVar(&f.electionTTL, "election-ttl", 5*time.Second, "autopilot election lease TTL (leader failover time)")
	fs.Var(&f.labels, "labels", "this node's labels, name=value,... (tenants isolated on labels use only nodes carrying them)")
	fs.Var(&f.tenants, "tenants", "YAML file declaring tenants: how requests map to them, min/max nodes, isolation (empty: no tenants)")
	fs.StringVar(&f.logFormat, "log-format", "auto", "auto (text on a terminal, else JSON), json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

func (f *nodeFlags) config(logger *slog.Logger) node.Config {
	var etcd []string
	for _, e := range strings.Split(f.etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			etcd = append(etcd, e)
		}
	}
	var hosts []string
	for _, h := range strings.Split(f.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	var cookies []string
	for _, c := range strings.Split(f.ignoreCookies, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cookies = append(cookies, c)
		}
	}
	c := node.DefaultConfig()
	c.ID, c.Zone, c.Cluster, c.Etcd = f.id, f.zone, f.cluster, etcd
	c.Listen, c.Admin, c.AdvertiseAddr, c.AdvertiseAdmin = f.listen, f.admin, f.advertise, f.advertiseAdmin
	c.Origin, c.AdminToken = f.origin, f.adminToken
	c.StoreBytes, c.MaxObjectBytes, c.MaxBodyBytes = int64(f.storeBytes), int64(f.maxObjectBytes), int64(f.maxBodyBytes)
	c.DefaultTTL, c.StaleWhileRevalidate, c.StaleIfError, c.Prefresh = f.defaultTTL, f.swr, f.sie, f.prefresh
	c.IgnoreClientRevalidate, c.Strict = f.ignoreClientRevalidate, f.strict
	c.OriginTimeout, c.OriginMaxConcurrency = f.originTimeout, uint(max(f.originMaxConcurrency, 0))
	c.OriginQueueWait = f.originQueueWait
	c.OriginMinConcurrency = uint(max(f.originMinConcurrency, 0))
	c.ForwardTimeout, c.MaxHeaderBytes, c.RejectUnsafe, c.MaxInflight = f.forwardTimeout, f.maxHeaderBytes, f.rejectUnsafe, int64(f.maxInflight)
	c.LeanHTTP = f.leanHTTP
	c.MemberTTL, c.ShutdownGrace, c.PurgeMaxDisconnect = f.memberTTL, f.shutdownGrace, f.purgeMaxDisconnect
	c.DisableAutopilot, c.Autopilot, c.HeatWindow, c.ElectionTTL = !f.autopilotOn, f.ap, f.heatWindow, f.electionTTL
	c.NearCopy, c.MaxObjectSettings = f.near, f.maxObjectSettings
	c.Tenants, c.Labels = f.tenants.cfg, f.labels.m
	c.AllowedHosts, c.KeyHost, c.AdminOpenKeys, c.IgnoreCookies = hosts, f.keyHost, f.adminOpenKeys, cookies
	c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = f.readHeaderTimeout, f.readTimeout, f.writeTimeout, f.idleTimeout
	c.Logger = logger
	return c
}

// checkNodeFlags rejects what the node config would otherwise change
// silently: an explicit 0 for a setting where zero is not a value (the
// config would take the default instead), and settings that --strict
// overrides (an operator who sets both has said two different things).
func checkNodeFlags(fs *flag.FlagSet, f *nodeFlags) error {
	notZero := map[string]bool{
		"store-bytes": f.storeBytes == 0, "max-object-bytes": f.maxObjectBytes == 0,
		"origin-timeout": f.originTimeout == 0, "origin-max-concurrency": f.originMaxConcurrency == 0,
		"origin-min-concurrency": f.originMinConcurrency == 0,
		"max-header-bytes":       f.maxHeaderBytes == 0, "max-inflight": f.maxInflight == 0,
		"member-ttl": f.memberTTL == 0, "near-copy-rps": f.near.RPS == 0, "heat-window": f.heatWindow == 0, "election-ttl": f.electionTTL == 0,
		"read-header-timeout": f.readHeaderTimeout == 0, "read-timeout": f.readTimeout == 0,
		"write-timeout": f.writeTimeout == 0, "idle-timeout": f.idleTimeout == 0,
	}
	if f.keyHost && strings.Trim(f.allowedHosts, ", \t") == "" {
		return errors.New("--key-host needs --allowed-hosts (the sites it keys apart)")
	}
	var err error
	fs.Visit(func(fl *flag.Flag) {
		if err != nil {
			return
		}
		if notZero[fl.Name] {
			err = fmt.Errorf("--%s must not be 0", fl.Name)
			return
		}
		if !f.strict {
			return
		}
		switch fl.Name {
		case "default-ttl", "stale-while-revalidate", "stale-if-error":
			if fl.Value.String() != "0s" {
				err = fmt.Errorf("--strict excludes --%s %s (strict serves no freshness or grace the origin did not give)", fl.Name, fl.Value)
			}
		case "ignore-client-revalidate":
			if f.ignoreClientRevalidate {
				err = errors.New("--strict excludes --ignore-client-revalidate (strict honours clients' request directives)")
			}
		}
	})
	return err
}

const nodeAbout = `Runs one crowdpilot node: a data listener (the cached HTTP service in front
of --origin) and an admin listener (/metrics, /healthz, /readyz, /api/v1),
joining the cluster through the etcd cluster at --etcd. Every node of a
cluster needs the same --cluster and --admin-token. SIGINT or SIGTERM: leave
the cluster, finish in-flight requests (up to --shutdown-grace), exit 0.`

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot node", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	var ef etcdFlags
	ef.register(fs)
	var pf peerFlags
	pf.register(fs)
	if err := parseFlags(fs, args, stdout, "crowdpilot node --etcd URL[,URL...] --origin URL [flags]", nodeAbout); err != nil {
		return badInput(stderr, "node", err)
	}
	if err := checkNodeFlags(fs, &nf); err != nil {
		return badInput(stderr, "node", err)
	}
	logger, err := newLogger(stderr, nf.logFormat, nf.logLevel)
	if err != nil {
		return badInput(stderr, "node", err)
	}
	cfg := nf.config(logger)
	if cfg.ID == "" {
		cfg.ID = cfg.Listen
	}
	if err := ef.apply(&cfg, os.LookupEnv); err != nil {
		return badInput(stderr, "node", err)
	}
	if err := pf.apply(fs, &cfg); err != nil {
		return badInput(stderr, "node", err)
	}
	memoryLimit(logger, cfg.StoreBytes, 1)
	defer startGCFloor(ctx, logger, gcFloorFor(cfg.StoreBytes, 1, debug.SetMemoryLimit(-1)))()
	maxProcs(logger, node.CPULimit())
	n, err := node.New(cfg)
	if err != nil {
		return badInput(stderr, "node", withFlagNames(err))
	}
	if err := n.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "crowdpilot node: %v\n", err)
		return 1
	}
	if p := n.PeerAddr(); p != "" {
		fmt.Fprintf(stdout, "node %s: data http://%s admin http://%s peers https://%s (mutual TLS)\n", n.ID(), n.DataAddr(), n.AdminAddr(), p)
	} else {
		fmt.Fprintf(stdout, "node %s: data http://%s admin http://%s\n", n.ID(), n.DataAddr(), n.AdminAddr())
	}
	<-ctx.Done()
	logger.Info("shutting down: leaving the cluster, finishing in-flight requests")
	if err := n.Shutdown(context.Background()); err != nil {
		logger.Warn("shutdown", "err", err)
	}
	return 0
}

// configFlags maps how node.Config.Validate names a setting at the start
// of a problem to the flag that sets it.
var configFlags = []struct{ phrase, flag string }{
	{"id ", "--id "}, {"etcd endpoints ", "--etcd endpoints "}, {"origin ", "--origin "},
	{"store bytes ", "--store-bytes "}, {"max object bytes ", "--max-object-bytes "},
	{"prefresh ", "--prefresh "}, {"default ttl ", "--default-ttl "},
	{"stale-while-revalidate ", "--stale-while-revalidate "}, {"stale-if-error ", "--stale-if-error "},
	{"shutdown grace ", "--shutdown-grace "}, {"purge max disconnect ", "--purge-max-disconnect "},
	{"origin timeout ", "--origin-timeout "}, {"forward timeout ", "--forward-timeout "},
	{"origin min concurrency ", "--origin-min-concurrency "}, {"origin queue wait ", "--origin-queue-wait "},
	{"member ttl ", "--member-ttl "}, {"heat window ", "--heat-window "}, {"election ttl ", "--election-ttl "},
	{"max header bytes ", "--max-header-bytes "}, {"max inflight ", "--max-inflight "},
	{"max body bytes ", "--max-body-bytes "},
	{"etcd cacert ", "--etcd-cacert "}, {"etcd cert ", "--etcd-cert "}, {"etcd key ", "--etcd-key "},
	{"etcd username ", "--etcd-username "}, {"etcd password ", "--etcd-password-file "},
	{"peer cacert ", "--peer-cacert "}, {"peer cert ", "--peer-cert "}, {"peer key ", "--peer-key "},
	{"peer listen ", "--peer-listen "}, {"advertise peer ", "--advertise-peer "},
}

// withFlagNames rewrites a node config error so that each problem starts
// with the flag to change: "prefresh 2 must be in (0, 1]" becomes
// "--prefresh 2 must be in (0, 1]".
func withFlagNames(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		prefix := ""
		if p, rest, ok := strings.Cut(l, "node config: "); ok && p == "" {
			prefix, l = "node config: ", rest
		}
		// Longest phrase first: "origin timeout" before "origin".
		best := -1
		for j, m := range configFlags {
			if strings.HasPrefix(l, m.phrase) && (best < 0 || len(m.phrase) > len(configFlags[best].phrase)) {
				best = j
			}
		}
		if best >= 0 {
			l = configFlags[best].flag + strings.TrimPrefix(l, configFlags[best].phrase)
		}
		lines[i] = prefix + l
	}
	return errors.New(strings.Join(lines, "\n"))
}
