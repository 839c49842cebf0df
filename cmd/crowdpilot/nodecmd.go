package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/node"
)

// nodeFlags are the flags of one node, shared by `node` and `up` (where they
// apply to every node).
type nodeFlags struct {
	id, zone, cluster, etcd, listen, admin, advertise, advertiseAdmin, origin, adminToken string
	storeBytes, maxObjectBytes, maxBodyBytes                                              byteSize
	defaultTTL, swr, sie, originTimeout, forwardTimeout                                   time.Duration
	memberTTL, shutdownGrace, purgeMaxDisconnect                                          time.Duration
	prefresh                                                                              float64
	originMaxConcurrency, maxHeaderBytes, maxInflight                                     int
	rejectUnsafe, autopilotOn                                                             bool
	ap                                                                                    autopilot.Config
	heatWindow, electionTTL                                                               time.Duration
	near                                                                                  node.NearCopyConfig
	logFormat, logLevel                                                                   string
	tenants                                                                               tenantsFlag
	labels                                                                                labelsFlag
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	d := node.DefaultConfig()
	fs.StringVar(&f.id, "id", "", "node ID, unique in the cluster (default: the data listen address)")
	fs.StringVar(&f.zone, "zone", "", "node's zone; routing prefers replicas in the same zone")
	fs.StringVar(&f.cluster, "cluster", d.Cluster, "cluster name; etcd keys live under /crowdpilot/<cluster>/")
	fs.StringVar(&f.etcd, "etcd", "", "comma-separated etcd client URLs")
	fs.StringVar(&f.listen, "listen", d.Listen, "data listener host:port (the cached HTTP service)")
	fs.StringVar(&f.admin, "admin", d.Admin, "admin listener host:port (/metrics, /healthz, /readyz, /api/v1)")
	fs.StringVar(&f.advertise, "advertise", "", "data address peers dial (default: the listen address)")
	fs.StringVar(&f.advertiseAdmin, "advertise-admin", "", "admin address peers dial (default: the admin listen address)")
	fs.StringVar(&f.origin, "origin", "", "origin base URL, e.g. http://127.0.0.1:9000")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token for mutating admin calls (purge)")
	f.storeBytes = byteSize(d.StoreBytes)
	fs.Var(&f.storeBytes, "store-bytes", "in-memory store bound (default 256MiB)")
	f.maxObjectBytes = byteSize(d.MaxObjectBytes)
	fs.Var(&f.maxObjectBytes, "max-object-bytes", "larger objects stream through uncached (default 8MiB)")
	f.maxBodyBytes = byteSize(d.MaxBodyBytes)
	fs.Var(&f.maxBodyBytes, "max-body-bytes", "largest request body passed to the origin; 413 beyond (default 1MiB)")
	fs.DurationVar(&f.defaultTTL, "default-ttl", d.DefaultTTL, "freshness of cacheable responses that give none")
	fs.DurationVar(&f.swr, "stale-while-revalidate", d.StaleWhileRevalidate, "serve stale while refreshing, when the response neither sets nor forbids it")
	fs.DurationVar(&f.sie, "stale-if-error", d.StaleIfError, "serve stale when the origin fails, when the response neither sets nor forbids it")
	fs.Float64Var(&f.prefresh, "prefresh", d.Prefresh, "fraction of the TTL after which hits also refresh in the background (1 = off)")
	fs.DurationVar(&f.originTimeout, "origin-timeout", d.OriginTimeout, "bound on one origin fetch, body included")
	fs.IntVar(&f.originMaxConcurrency, "origin-max-concurrency", int(d.OriginMaxConcurrency), "ceiling of the adaptive origin concurrency limit per node")
	fs.DurationVar(&f.forwardTimeout, "forward-timeout", 0, "wait for a peer's response headers before failing over (default origin-timeout + 1s)")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", d.MaxHeaderBytes, "largest request header block; 431 beyond")
	fs.IntVar(&f.maxInflight, "max-inflight", int(d.MaxInflight), "data requests served at once; beyond it a fast 503 with Retry-After")
	fs.BoolVar(&f.rejectUnsafe, "reject-unsafe", false, "answer 405 to methods other than GET/HEAD instead of passing them to the origin")
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
	fs.DurationVar(&f.ap.P99Objective, "replica-p99-objective", 0, "add replicas to a hot object while a member's p99 exceeds this (0: off)")
	fs.Float64Var(&f.ap.ErrorObjective, "replica-error-objective", 0, "add replicas to a hot object while a member's error rate exceeds this fraction (0: off)")
	fs.Float64Var(&f.near.RPS, "near-copy-rps", d.NearCopy.RPS, "a router keeps a near copy of a key it does not own once the key's rate at this node reaches this (requests/s over --heat-window)")
	fs.DurationVar(&f.near.TTL, "near-copy-ttl", d.NearCopy.TTL, "lease of a near copy, also bounded by the object's freshness; renewed from the replica set while hot (0: no near copies)")
	fs.Float64Var(&f.near.Share, "near-copy-share", d.NearCopy.Share, "part of --store-bytes near copies may use (0: no near copies)")
	fs.DurationVar(&f.heatWindow, "heat-window", 250*time.Millisecond, "time constant of per-key rate estimates")
	fs.DurationVar(&f.electionTTL, "election-ttl", 5*time.Second, "autopilot election lease TTL (leader failover time)")
	fs.Var(&f.labels, "labels", "this node's labels, name=value,... (tenants isolated on labels use only nodes carrying them)")
	fs.Var(&f.tenants, "tenants", "YAML file declaring tenants: how requests map to them, min/max nodes, isolation (default: none)")
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
	return node.Config{
		ID: f.id, Zone: f.zone, Cluster: f.cluster, Etcd: etcd,
		Listen: f.listen, Admin: f.admin, AdvertiseAddr: f.advertise, AdvertiseAdmin: f.advertiseAdmin,
		Origin: f.origin, AdminToken: f.adminToken,
		StoreBytes: int64(f.storeBytes), MaxObjectBytes: int64(f.maxObjectBytes), MaxBodyBytes: int64(f.maxBodyBytes),
		DefaultTTL: f.defaultTTL, StaleWhileRevalidate: f.swr, StaleIfError: f.sie, Prefresh: f.prefresh,
		OriginTimeout: f.originTimeout, OriginMaxConcurrency: uint(max(f.originMaxConcurrency, 0)),
		ForwardTimeout: f.forwardTimeout, MaxHeaderBytes: f.maxHeaderBytes, RejectUnsafe: f.rejectUnsafe, MaxInflight: int64(f.maxInflight),
		MemberTTL: f.memberTTL, ShutdownGrace: f.shutdownGrace, PurgeMaxDisconnect: f.purgeMaxDisconnect,
		DisableAutopilot: !f.autopilotOn, Autopilot: f.ap, HeatWindow: f.heatWindow, ElectionTTL: f.electionTTL,
		NearCopy: f.nearCopy(),
		Tenants:  f.tenants.cfg,
		Labels:   f.labels.m,
		Logger:   logger,
	}
}

// nearCopy is the near-copy configuration; a TTL or share of 0 turns near
// copies off (zero means zero).
func (f *nodeFlags) nearCopy() node.NearCopyConfig {
	nc := f.near
	if nc.TTL == 0 || nc.Share == 0 {
		nc.Disabled = true
	}
	return nc
}

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot node", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
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
	n, err := node.New(cfg)
	if err != nil {
		return badInput(stderr, "node", err)
	}
	if err := n.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "crowdpilot node: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "node %s: data http://%s admin http://%s\n", n.ID(), n.DataAddr(), n.AdminAddr())
	<-ctx.Done()
	logger.Info("shutting down: leaving the cluster, finishing in-flight requests")
	if err := n.Shutdown(context.Background()); err != nil {
		logger.Warn("shutdown", "err", err)
	}
	return 0
}
