// Package node is one crowdpilot node: the data listener that routes and
// serves cached HTTP, the admin listener, and the lifecycle that joins and
// leaves the cluster.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/heat"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// Node is one member of a crowdpilot cluster. New → Start → Shutdown.
type Node struct {
	cfg    Config
	origin *url.URL
	store  *httpcache.Store
	fill   *fill.Group
	router *route.Router
	fwd    *route.Forwarder // client requests forwarded to their owner or a replica
	// fills carries peer fills (replica copies and refreshes) in a pool of
	// its own: in a crowd, the forward pool to the owner is full and
	// queued, and a copy waiting behind the crowd is what would end it.
	fills *route.Forwarder
	pass  http.Handler // streams uncacheable requests to the origin
	m     *metrics

	servedBy []string  // X-Served-By value, shared read-only by every response
	hop      hopProver // proves and checks that a request comes from a peer
	ptls     *peerTLS  // node-to-node TLS; nil: plain HTTP between nodes
	// noPeerTLS are the members left out of routing for want of a peer
	// listener, as logged (at most maxNoPeerTLSWarned); onMembers only.
	noPeerTLS map[string]struct{}

	etcd    *cluster.Client  // handed to the stores, which do every read and write
	records *cluster.Records // seals and opens every record the node writes to etcd and reads back
	self    cluster.Member   // this node's record as peers see it (advertised addresses)
	members *cluster.Membership
	// membersMu serialises onMembers (the membership watch, and the end
	// of a lost member's hold, lost.go).
	membersMu sync.Mutex
	term      ownerTerm // this node's term as an owner, and what it published (owned.go)
	lost      *lostPeers

	purgeLog      *purge.Log
	follower      *purge.Follower
	purgeRev      atomic.Int64  // last applied purge revision, to publish
	lastPurge     atomic.Int64  // revision of the last purge applied (not the log position)
	publishRev    chan struct{} // wakes the publisher (capacity 1: coalesces)
	appliedSignal atomicSignal  // closed on every applied purge
	inv           *invalidator  // unsafe-request paths, coalesced, on their way to the log

	ap autopilotParts

	tenants tenantParts // declared tenants and their records (tenants.go)

	meter     *heat.Meter   // per-key rates on the serving path: near copies, immediate reports
	reportNow chan struct{} // a key turned hot: report before the tick (capacity 1: coalesces)
	nearKeys  nearKeys      // keys of the near copies kept, for reports

	inflight atomic.Int64
	hosts    hostSet                 // Hosts served (sanitize.go); set in Start, read-only after
	policy   httpcache.RequestPolicy // how clients' request directives count
	ho       *handoff                // warm handoff and drain (handoff.go)

	dataLn, adminLn net.Listener
	peerLn          net.Listener // with peer TLS: the peer listener (TLS); else nil
	data            dataServer   // h1's front, or net/http alone (Config.LeanHTTP)
	admin           *http.Server
	peer            *http.Server // serves peerLn; nil without peer TLS

	cancel context.CancelFunc // stops background loops
	wg     sync.WaitGroup     // background loops and servers
	once   sync.Once          // guards shutdown
}

// New validates cfg and builds a node; nothing listens until Start.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	origin, _ := url.Parse(cfg.Origin)
	n := &Node{
		cfg: cfg, origin: origin, servedBy: []string{cfg.ID},
		publishRev: make(chan struct{}, 1),
		reportNow:  make(chan struct{}, 1),
	}
	n.policy = cfg.requestPolicy()
	n.appliedSignal.Store(newSignal())
	n.m = newMetrics(cfg.Registry, &n.inflight)
	n.inv = newInvalidator(cfg.InvalidateInterval, n.appendInvalidation, n.m.shed, cfg.Logger)
	n.ho = newHandoff(cfg.Registry)
	n.lost = newLostPeers(cfg.MemberTTL, cfg.Registry)

	var err error
	if n.meter, err = newMeter(cfg); err != nil {
		return nil, fmt.Errorf("node near-copy meter: %w", err)
	}
	var nearBytes int64
	if !cfg.NearCopy.off() {
		nearBytes = int64(float64(cfg.StoreBytes) * cfg.NearCopy.Share)
	}
	var reserveBytes int64
	if !cfg.NearCopy.reserveOff() {
		reserveBytes = int64(float64(cfg.StoreBytes) * cfg.NearCopy.ReserveShare)
	}
	n.store, err = httpcache.NewStore(httpcache.StoreConfig{
		MaxBytes:        cfg.StoreBytes,
		MaxNearBytes:    nearBytes,
		MaxReserveBytes: reserveBytes,
		Registerer:      cfg.Registry,
		Now:             cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("node store: %w", err)
	}
	cfg.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_near_copies",
			Help: "Near copies this node holds: hot objects it does not own, kept under a short lease.",
		}, func() float64 { return float64(n.store.NearLen()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_near_copy_bytes",
			Help: "Bytes of near copies this node holds (bounded by --near-copy-share of the store).",
		}, func() float64 { return float64(n.store.NearBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_reserves",
			Help: "Reserves this node holds: objects it relayed while they were not hot, served only stale within stale-while-revalidate while it revalidates them.",
		}, func() float64 { return float64(n.store.ReserveLen()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crowdpilot_reserve_bytes",
			Help: "Bytes of reserves this node holds (bounded by --reserve-share of the store).",
		}, func() float64 { return float64(n.store.ReserveBytes()) }),
	)
	n.fill, err = fill.New(fill.Config{
		Origin:         origin,
		RequestHost:    cfg.KeyHost,
		Store:          n.store,
		Defaults:       cfg.cacheDefaults(),
		Timeout:        cfg.OriginTimeout,
		MaxObjectBytes: cfg.MaxObjectBytes,
		MaxLimit:       cfg.OriginMaxConcurrency,
		MinLimit:       cfg.OriginMinConcurrency,
		InitialLimit:   max(cfg.OriginMinConcurrency, min(16, cfg.OriginMaxConcurrency)),
		LimitWait:      cfg.OriginQueueWait,
		Shed:           n.m.shed,
		Registerer:     cfg.Registry,
		Logger:         cfg.Logger,
		Now:            cfg.Now,
	})
	if err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node fill: %w", err)
	}
	n.router = route.NewRouter(route.Config{Self: cfg.ID, Zone: cfg.Zone, Now: cfg.Now, PeerLimit: cfg.PeerLimit})
	n.tenants.init(cfg.Tenants)
	n.hop = newHopProver(cfg.AdminToken, nil, cfg.Registry)
	if n.ptls, err = cfg.peerTLS(); err != nil { // Validate read the files once already
		n.fill.Close()
		n.store.Close()
		return nil, fmt.Errorf("node config: %w", err)
	}
	tlsc := n.ptls.clientConfig()
	n.fwd = route.NewForwarder(route.ForwarderConfig{Self: cfg.ID, Hop: n.outboundHop, Timeout: cfg.ForwardTimeout, TLS: tlsc})
	n.fills = route.NewForwarder(route.ForwarderConfig{Self: cfg.ID, Hop: n.outboundHop, Timeout: cfg.ForwardTimeout, MaxConnsPerPeer: fillConnsPerPeer, TLS: tlsc})
	n.pass = n.newPassProxy()
	return n, nil
}

// dataListenConfig is the data listener's: TCP keep-alive probes on client
// connections cost four setsockopt calls per accept (a crowd is new
// connections) and find nothing an idle timeout does not, so with one they
// are off. Without one (0), they are how a vanished client's connection
// ends, and stay on.
func dataListenConfig(idleTimeout time.Duration) net.ListenConfig {
	var lc net.ListenConfig
	if idleTimeout > 0 {
		lc.KeepAlive = -1
	}
	return lc
}

// Start binds both listeners, starts serving, and joins the cluster in the
// background (Ready reports when membership has loaded).
func (n *Node) Start(ctx context.Context) error {
	var err error
	lc := dataListenConfig(n.cfg.IdleTimeout)
	if n.dataLn, err = lc.Listen(ctx, "tcp", n.cfg.Listen); err != nil {
		return fmt.Errorf("data listener %s: %w", n.cfg.Listen, err)
	}
	if n.adminLn, err = net.Listen("tcp", n.cfg.Admin); err != nil {
		n.dataLn.Close()
		return fmt.Errorf("admin listener %s: %w", n.cfg.Admin, err)
	}
	if n.ptls != nil {
		ln, err := net.Listen("tcp", n.cfg.PeerListen)
		if err != nil {
			n.closeListeners()
			return fmt.Errorf("peer listener %s: %w", n.cfg.PeerListen, err)
		}
		n.peerLn = tls.NewListener(ln, n.ptls.server)
	}
	n.hosts = n.newHostSet() // before anything is served; read-only after
	self := cluster.Member{
		ID:    n.cfg.ID,
		Addr:  orDefault(n.cfg.AdvertiseAddr, n.dataLn.Addr().String()),
		Admin: orDefault(n.cfg.AdvertiseAdmin, n.adminLn.Addr().String()),
		Zone:  n.cfg.Zone,
		// Nothing owned yet: peers need not peek this node (owned.go)
		// until its record says otherwise.
		Unowned: true,
	}
	if n.peerLn != nil {
		self.Peer = orDefault(n.cfg.AdvertisePeer, n.peerLn.Addr().String())
	}
	self.Labels = route.FormatLabels(n.cfg.Labels)
	n.self = self
	n.router.SetPeers([]route.Peer{{ID: self.ID, Addr: n.dataAddrOf(self), Zone: self.Zone}})

	if n.etcd, err = cluster.Dial(ctx, n.cfg.etcdClient(), cluster.Prefix(n.cfg.Cluster), n.cfg.Logger); err != nil {
		n.closeListeners()
		return fmt.Errorf("etcd client: %w", err)
	}
	if n.records, err = n.newRecords(); err != nil {
		n.closeListeners()
		n.etcd.Close()
		return err
	}
	n.members, err = cluster.NewMembership(cluster.MembershipConfig{
		Client:   n.etcd,
		Cluster:  n.cfg.Cluster,
		Self:     self,
		TTL:      n.cfg.MemberTTL,
		Logger:   n.cfg.Logger,
		Records:  n.records,
		OnChange: n.onMembers,
	})
	if err != nil {
		n.closeListeners()
		n.etcd.Close()
		return fmt.Errorf("membership: %w", err)
	}
	n.purgeLog = purge.NewLog(n.etcd, n.cfg.Cluster, n.records)
	n.follower, err = purge.NewFollower(purge.FollowerConfig{
		Client:        n.etcd,
		Cluster:       n.cfg.Cluster,
		Applier:       purgeApplier{n},
		OnApplied:     n.onPurgeApplied,
		MaxDisconnect: n.cfg.PurgeMaxDisconnect,
		Logger:        n.cfg.Logger,
		Records:       n.records,
		Registerer:    n.cfg.Registry,
	})
	if err != nil {
		n.closeListeners()
		n.etcd.Close()
		return fmt.Errorf("purge follower: %w", err)
	}

	if err := n.newAutopilot(); err != nil {
		n.closeListeners()
		n.etcd.Close()
		return err
	}

	n.registerStateGauges()
	dataLn := n.newDataServer()
	adminH := n.adminHandler()
	n.admin = &http.Server{
		Handler:           adminH,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          newStdLogger(n.cfg.Logger),
	}
	if n.peerLn != nil {
		n.peer = n.newPeerServer(adminH)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	n.startTenants(bg) // before the admin API and the election use its parts
	n.goServe(n.data.Serve, dataLn)
	n.goServe(n.admin.Serve, n.adminLn)
	if n.peer != nil {
		n.goServe(n.peer.Serve, n.peerLn)
	}
	n.goLoop(bg, "membership", n.join) // once the purge follower has a position
	n.goLoop(bg, "purge follower", n.follower.Run)
	n.goLoop(bg, "record publisher", func(ctx context.Context) error { n.publishRecord(ctx); return nil })
	n.goLoop(bg, "invalidations", func(ctx context.Context) error { n.inv.run(ctx); return nil })
	n.startAutopilot(bg)
	n.cfg.Logger.Info("node started", "id", n.cfg.ID, "data", self.Addr, "admin", self.Admin, "peer", self.Peer, "origin", n.cfg.Origin)
	return nil
}

func (n *Node) goServe(serve func(net.Listener) error, ln net.Listener) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error("server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// goLoop runs one background loop owned by the node until ctx is done.
func (n *Node) goLoop(ctx context.Context, name string, run func(context.Context) error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.cfg.Logger.Error("background loop stopped", "loop", name, "err", err)
		}
	}()
}

// onMembers turns a membership snapshot into routing peers. Draining nodes
// stop owning keys; this node always routes to itself. With peer TLS, a
// member without a peer listener (a node without peer TLS) is left out:
// this node will not talk to it in plaintext.
func (n *Node) onMembers(ms []cluster.Member) {
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	n.term.observe(ms, n.cfg.ID, n.cfg.Now())
	before := len(n.lost.lost)
	ms, gone, next := n.lost.view(ms, n.cfg.ID, n.cfg.Now())
	if len(n.lost.lost) > before {
		n.cfg.Logger.Warn("member record vanished without a drain (lapsed lease); still routing to it for one member TTL", "held", len(n.lost.lost), "ttl", n.cfg.MemberTTL)
	}
	if len(gone) > 0 {
		n.cfg.Logger.Info("members no longer held: their keys move", "members", gone)
	}
	if next > 0 {
		n.lost.after(next, func() { n.onMembers(n.members.Members()) })
	}
	peers := make([]route.Peer, 0, len(ms)+1)
	selfSeen := false
	for _, m := range ms {
		if m.Draining && m.ID != n.cfg.ID {
			continue
		}
		addr := n.dataAddrOf(m)
		if addr == "" && m.ID != n.cfg.ID {
			n.warnNoPeerTLS(m.ID)
			continue
		}
		selfSeen = selfSeen || m.ID == n.cfg.ID
		peers = append(peers, route.Peer{ID: m.ID, Addr: addr, Zone: m.Zone, Labels: m.Labels, Draining: m.Draining})
	}
	if !selfSeen {
		peers = append(peers, route.Peer{ID: n.self.ID, Addr: n.dataAddrOf(n.self), Zone: n.self.Zone, Labels: n.self.Labels})
	}
	n.router.SetPeers(peers)
}

// DataAddr is the bound data listener address.
func (n *Node) DataAddr() string { return n.dataLn.Addr().String() }

// AdminAddr is the bound admin listener address.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// PeerAddr is the bound peer listener address; "" without peer TLS.
func (n *Node) PeerAddr() string {
	if n.peerLn == nil {
		return ""
	}
	return n.peerLn.Addr().String()
}

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Ready reports whether the node has joined membership.
func (n *Node) Ready() bool { return n.members != nil && n.members.Ready() }

// Shutdown drains first (routers stop sending; peers take over its keys
// from it, see drain), then leaves the cluster, then lets in-flight
// requests finish within the grace period, then stops.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.once.Do(func() {
		deadline := time.Now().Add(n.cfg.ShutdownGrace) // the drain takes part of it
		n.drain(ctx)
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if derr := n.members.Deregister(dctx); derr != nil {
			n.cfg.Logger.Warn("deregister failed; the lease will expire", "err", derr)
		}
		cancel()
		gctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		err = errors.Join(n.data.Shutdown(gctx), n.admin.Shutdown(gctx))
		if n.peer != nil {
			err = errors.Join(err, n.peer.Shutdown(gctx))
		}
		n.stop()
	})
	return err
}

// stop ends background work and releases resources.
func (n *Node) stop() {
	n.lost.stop()
	n.cancel()
	n.wg.Wait()
	n.fill.Close()
	n.fwd.Close()
	n.fills.Close()
	n.store.Close()
	n.etcd.Close()
}

// crash stops the node the way a killed process would: listeners and
// connections vanish, the membership lease is not revoked. For tests.
func (n *Node) crash() {
	n.once.Do(func() {
		n.data.Close()
		n.admin.Close()
		if n.peer != nil {
			n.peer.Close()
		}
		n.etcd.Close() // keep-alives stop; the lease expires on its own
		n.stop()
	})
}

func (n *Node) closeListeners() {
	n.dataLn.Close()
	n.adminLn.Close()
	if n.peerLn != nil {
		n.peerLn.Close()
	}
}

func orDefault(v, d string) string {
	if v != "" {
		return v
	}
	return d
}
