package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/heat"
)

// Internal admin paths nodes use to talk to each other.
const (
	pathHeat      = "/internal/v1/heat"
	pathReplicate = "/internal/v1/replicate"
	// purgeRevHeader carries the purge revision a replica has applied when
	// it fills from the owner.
	purgeRevHeader = "X-Crowdpilot-Purge-Rev"
	// reportKeys is how many of its hottest keys a node reports.
	reportKeys = 32
	// maxReportBytes bounds a heat report body.
	maxReportBytes = 64 << 10
)

// autopilotParts are the pieces every node runs for the autopilot: heat
// tracking and reporting, the replica registry (routing), and a candidate
// for leadership, whose leader loop drives the actuator.
type autopilotParts struct {
	heat     *heat.Tracker
	registry *autopilot.Registry
	election *cluster.Election   // finds the leader; campaigns only when leader != nil
	leader   *autopilot.Leader   // nil when the autopilot is off on this node
	actuator *autopilot.Actuator // likewise

	hot hotObjects // per-object series for the hot set (hotobjects.go)

	cachedLeader atomic.Pointer[leaderRef] // cached leader, nil unknown
	client       *http.Client              // node-to-node admin calls, bounded by timeouts
	peer         peerProver                // signs and checks node-to-node admin calls

	objects objectParts // operators' pins and caps per key (objects.go)
}

// leaderRef is the autopilot leader as the election names it.
type leaderRef struct{ id, admin string }

// newAutopilot builds the autopilot parts; Start runs them.
func (n *Node) newAutopilot() error {
	var err error
	a := &n.ap
	a.client = n.newPeerClient()
	a.peer = newPeerProver(n.cfg.AdminToken, nil, n.cfg.Registry)
	if a.heat, err = heat.New(heat.Config{Window: n.cfg.HeatWindow}); err != nil {
		return fmt.Errorf("heat: %w", err)
	}
	replicas, err := cluster.NewReplicaStore(n.etcd, n.cfg.Cluster, n.records, n.cfg.Logger)
	if err != nil {
		return fmt.Errorf("replica store: %w", err)
	}
	if a.registry, err = autopilot.NewRegistry(autopilot.RegistryConfig{
		Store:    replicas,
		OnChange: n.onReplicaSets,
		Logger:   n.cfg.Logger,
	}); err != nil {
		return fmt.Errorf("replica registry: %w", err)
	}
	a.election, err = cluster.NewElection(cluster.ElectionConfig{
		Client:  n.etcd,
		Cluster: n.cfg.Cluster,
		ID:      n.cfg.ID,
		Value:   n.callAddrOf(n.self), // what peers dial to reach the leader
		TTL:     n.cfg.ElectionTTL,
		Logger:  n.cfg.Logger,
		Records: n.records,
		OnElected: func(ctx context.Context, fence cluster.Fence) {
			n.cfg.Logger.Info("autopilot leader elected", "id", n.cfg.ID)
			done := make(chan struct{})
			go func() { defer close(done); n.compactPurgeLog(ctx) }()
			capacityDone := n.runCapacity(ctx, fence) // tenants.go
			if err := a.leader.Run(ctx, fence); err != nil && !errors.Is(err, context.Canceled) {
				n.cfg.Logger.Warn("autopilot leader stopped", "err", err)
			}
			<-done
			<-capacityDone
		},
	})
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	a.hot.init(n.cfg.Registry, n.fill.Origin, n.cfg.AdminOpenKeys)
	if err := n.newObjects(); err != nil {
		return err
	}
	if n.cfg.DisableAutopilot {
		return nil // routes to replicas, but never leads
	}
	if a.actuator, err = autopilot.NewActuator(autopilot.ActuatorConfig{
		Store:      replicas,
		TTL:        n.cfg.Autopilot.ReplicaTTL,
		Copier:     copier{n},
		Logger:     n.cfg.Logger,
		Registerer: n.cfg.Registry,
	}); err != nil {
		return fmt.Errorf("actuator: %w", err)
	}
	if a.leader, err = autopilot.NewLeader(autopilot.LeaderConfig{
		Policy:     n.cfg.Autopilot,
		Actuator:   a.actuator,
		Registry:   a.registry,
		Tick:       min(n.cfg.ReportInterval, replicaTTL(n.cfg.Autopilot)/10),
		Owner:      func(h uint64) string { p, _ := n.router.Owner(h); return p.ID },
		Nodes:      n.nodeInfos,
		Limits:     n.objectLimits,
		KeyLabel:   n.metricKey,
		Logger:     n.cfg.Logger,
		Registerer: n.cfg.Registry,
	}); err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	return nil
}

// startAutopilot runs the autopilot loops under ctx.
func (n *Node) startAutopilot(ctx context.Context) {
	n.goLoop(ctx, "replica registry", n.ap.registry.Run)
	n.goLoop(ctx, "heat ticker", n.tickHeat)
	n.startObjects(ctx)
	if n.ap.leader == nil {
		return
	}
	n.goLoop(ctx, "election", n.ap.election.Run)
	n.goLoop(ctx, "heat reporter", n.reportHeat)
}

// tickHeat advances the heat tracker's rates a few times per window while
// any of its shards is full (admission and eviction rank keys by those
// rates), and once a report interval otherwise: the reporter folds the
// rates itself before it reads them, so an idle node wakes for its tracker
// about once a second rather than sixteen times.
func (n *Node) tickHeat(ctx context.Context) error {
	fast := n.cfg.HeatWindow / 4
	slow := max(fast, n.quietReportEvery())
	t := time.NewTimer(fast)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n.ap.heat.Tick(n.cfg.Now()) {
				t.Reset(fast)
			} else {
				t.Reset(slow)
			}
		}
	}
}

// nodeInfos is the leader's view of the members for placement: a member
// this node's router currently suspects (its forwards failed, or it refused
// connections) is unreachable. Load comes from the members' own reports.
func (n *Node) nodeInfos() []autopilot.NodeInfo {
	ms := n.members.Members()
	out := make([]autopilot.NodeInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, autopilot.NodeInfo{ID: m.ID, Zone: m.Zone, Draining: m.Draining, Unreachable: n.router.Suspected(m.ID)})
	}
	return out
}

// report is this node's heat report: its hottest keys with their decayed
// and recent rates, and its load over the interval since the last report
// (w and recent belong to the reporter). It also returns every key the
// heat tracker holds, for the per-object series.
func (n *Node) report(w *loadWindow, recent *heat.Recent, limit *cpuLimitReader) (autopilot.Report, []heat.KeyRate) {
	now := n.cfg.Now()
	// Every tracked key goes through recent (bounded by the tracker's
	// capacity), so a key that climbs into the report between two reports
	// still gets its recent rate.
	tracked := n.ap.heat.Top(math.MaxInt)
	recent.Fill(now, tracked)
	keys := slices.Clip(tracked[:min(len(tracked), reportKeys)])
	l := w.next()
	var cpuLimit float64
	if n.cfg.SharesProcess {
		l.cpu = 0 // the process's, not ours: unknown
	} else {
		cpuLimit = limit.get(now)
	}
	return autopilot.Report{
		Node:      n.cfg.ID,
		Zone:      n.cfg.Zone,
		At:        now,
		Keys:      keys,
		InFlight:  n.inflight.Load(),
		P99:       l.p99,
		ErrorRate: l.errRate,
		CPU:       l.cpu,
		CPULimit:  cpuLimit,
		Near:      n.nearCopies(now),
	}, tracked
}

// reportSoon asks the reporter for a report ahead of its tick, because a
// key turned hot on the serving path. It never blocks: a request already
// pending covers this one.
func (n *Node) reportSoon() {
	if n.ap.leader == nil {
		return // the autopilot is off here: nobody to tell
	}
	select {
	case n.reportNow <- struct{}{}:
	default:
		n.m.shed("heat_report_now") // coalesced with the one pending
	}
}

// reportHeat sends a heat report to the leader every ReportInterval, and
// once every quietReportEvery while the node is quiet (quietReport). A
// report that cannot be delivered is dropped (the next one replaces it);
// nothing on the serving path waits for this.
func (n *Node) reportHeat(ctx context.Context) error {
	t := time.NewTimer(n.cfg.ReportInterval)
	defer t.Stop()
	w := n.m.window()
	var recent heat.Recent
	limit := cpuLimitReader{read: func() float64 { return osCPULimit(runtime.NumCPU()) }}
	quietEvery := n.quietReportEvery()
	var lastNow time.Time
	quiet := false // the last report found nothing warm here, nor the leader anything hot
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-n.reportNow:
			// A key just turned hot here: tell the leader now, not on the
			// next tick, but at most a few times per interval.
			if now := n.cfg.Now(); now.Sub(lastNow) < n.cfg.ReportInterval/4 {
				continue
			} else {
				lastNow = now
			}
			n.ap.heat.Tick(n.cfg.Now())
			n.m.reportsNow.Inc()
		}
		r, tracked := n.report(w, &recent, &limit)
		if n.ap.election.IsLeader() {
			if !n.ap.leader.Offer(r) {
				n.m.shed("heat_report")
			}
			hot := hotKeysOf(n.ap.leader.Hot())
			n.ap.hot.refresh(hot, tracked, r.At)
			quiet = len(hot) == 0 && n.quietReport(r)
			n.nextReport(t, quiet, quietEvery)
			continue
		}
		hot, err := n.sendReport(ctx, r)
		if err != nil {
			n.m.shed("heat_report")
			n.ap.cachedLeader.Store(nil) // look the leader up again next time
			n.cfg.Logger.Debug("heat report not delivered", "err", err)
			n.ap.hot.expire(r.At, hotSetMaxReports*n.cfg.ReportInterval)
			quiet = false // until one is delivered
			n.nextReport(t, quiet, quietEvery)
			continue
		}
		n.ap.hot.refresh(hot, tracked, r.At)
		quiet = len(hot) == 0 && n.quietReport(r)
		n.nextReport(t, quiet, quietEvery)
	}
}

// nextReport sets the reporter's timer for the next report: an interval
// away, or quietEvery while quiet (counting the ticks left out).
func (n *Node) nextReport(t *time.Timer, quiet bool, quietEvery time.Duration) {
	d := n.cfg.ReportInterval
	if quiet {
		d = quietEvery
		if skipped := int(quietEvery/n.cfg.ReportInterval) - 1; skipped > 0 {
			n.m.reportsQuiet.Add(float64(skipped))
		}
	}
	t.Reset(d)
}

// quietReport reports whether r shows a node with nothing the leader would
// act on soon: no key here at half the near-copy rate or more, no near
// copy held, no errors, and under a fifth of its CPU. Such a node reports
// less often; the first key that turns hot here reports at once
// (reportSoon), and the next report after anything else changes is at
// most quietReportEvery away.
func (n *Node) quietReport(r autopilot.Report) bool {
	warm := n.cfg.NearCopy.RPS / 2
	for _, k := range r.Keys {
		if k.Rate >= warm || k.Recent >= warm {
			return false
		}
	}
	cores := r.CPULimit
	if cores <= 0 {
		cores = float64(runtime.NumCPU())
	}
	return len(r.Near) == 0 && r.ErrorRate == 0 && r.CPU < cores/5
}

// quietReportEvery is how often a quiet node reports: every fourth
// interval, but often enough that the leader never ages its last report
// out (the autopilot's and the capacity manager's report max age, halved),
// and never more often than every interval.
func (n *Node) quietReportEvery() time.Duration {
	maxAge := n.cfg.Autopilot.ReportMaxAge
	if maxAge <= 0 {
		maxAge = min(autopilot.DefaultReportMaxAge, replicaTTL(n.cfg.Autopilot)/2) // the leader's default
	}
	pc := capacity.DefaultConfig()
	if n.cfg.Capacity != nil {
		pc = *n.cfg.Capacity
	}
	maxAge = min(maxAge, pc.ReportMaxAge)
	return max(n.cfg.ReportInterval, min(4*n.cfg.ReportInterval, maxAge/2))
}

// sendReport delivers r to the leader and returns the hot set from its
// answer (none from a leader that sends none).
func (n *Node) sendReport(ctx context.Context, r autopilot.Report) ([]hotKey, error) {
	l, err := n.findLeader(ctx)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var reply heatReply
	if err := n.adminCall(ctx, http.MethodPost, l.id, l.admin, pathHeat, body, &reply); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return reply.Hot, nil
}

// findLeader is the leader's ID and admin address, cached until a call
// fails.
func (n *Node) findLeader(ctx context.Context) (leaderRef, error) {
	if p := n.ap.cachedLeader.Load(); p != nil {
		return *p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	id, addr, err := n.ap.election.Leader(ctx)
	if err != nil {
		return leaderRef{}, fmt.Errorf("find leader: %w", err)
	}
	l := leaderRef{id: id, admin: addr}
	n.ap.cachedLeader.Store(&l)
	return l, nil
}

// adminCall makes one call to node to's admin listener at addr, signed
// with a peer proof (never the token), and decodes a JSON answer into out
// (if non-nil).
func (n *Node) adminCall(ctx context.Context, method, to, addr, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, n.callURL(addr, path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	n.signPeerCall(req, to, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.ap.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s%s: %s: %s", method, addr, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out != nil {
		return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// handleHeat receives a heat report (leader only).
func (n *Node) handleHeat(w http.ResponseWriter, r *http.Request) {
	if n.ap.leader == nil || !n.ap.election.IsLeader() {
		writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "not the autopilot leader"})
		return
	}
	var rep autopilot.Report
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReportBytes))
	if err := dec.Decode(&rep); err != nil || rep.Node == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed heat report"})
		return
	}
	if !n.ap.leader.Offer(rep) {
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "report queue full"})
		return
	}
	// The answer tells the reporter which objects are hot, for its
	// per-object series (hotobjects.go).
	writeJSON(w, http.StatusAccepted, heatReply{Hot: hotKeysOf(n.ap.leader.Hot())})
}

// handleHot is /api/v1/hot: answered by the leader, proxied by the others.
func (n *Node) handleHot(w http.ResponseWriter, r *http.Request) {
	if n.ap.leader != nil && n.ap.election.IsLeader() {
		writeJSON(w, http.StatusOK, map[string]any{"leader": n.cfg.ID, "hot": n.ap.leader.Hot(), "nodes": n.ap.leader.Loads()})
		return
	}
	n.proxyToLeader(w, r)
}

// handleEvents is /api/v1/events: recent scale decisions, newest first.
func (n *Node) handleEvents(w http.ResponseWriter, r *http.Request) {
	if n.ap.leader != nil && n.ap.election.IsLeader() {
		writeJSON(w, http.StatusOK, map[string]any{"leader": n.cfg.ID, "events": n.ap.leader.Events(200)})
		return
	}
	n.proxyToLeader(w, r)
}

func (n *Node) proxyToLeader(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Crowdpilot-Proxied") != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no autopilot leader"})
		return
	}
	l, err := n.findLeader(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no autopilot leader: " + err.Error()})
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, n.callURL(l.admin, r.URL.Path), nil)
	req.Header.Set("X-Crowdpilot-Proxied", n.cfg.ID)
	if n.hasToken(r) {
		n.signPeerCall(req, l.id, nil) // the leader shows full keys too; the token stays here
	}
	resp, err := n.ap.client.Do(req)
	if err != nil {
		n.ap.cachedLeader.Store(nil)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "leader unreachable: " + err.Error()})
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 8<<20))
}

// maxPurgeLogEntries bounds the live purge log by size: at the rates the
// invalidator allows, an hour of unsafe requests could exceed it.
const maxPurgeLogEntries = 10000

// compactPurgeLog drops purge-log entries older than an hour, and the
// oldest beyond maxPurgeLogEntries, every minute while this node leads.
// Followers that fall further behind than etcd's own history flush their
// caches instead of skipping purges.
func (n *Node) compactPurgeLog(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := n.purgeLog.Compact(cctx, time.Hour); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("purge log compaction", "err", err)
		}
		if _, err := n.purgeLog.CompactTo(cctx, maxPurgeLogEntries); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("purge log compaction by size", "err", err)
		}
		cancel()
	}
}

// replicaTTL is the policy's replica lease TTL, default filled in.
func replicaTTL(c autopilot.Config) time.Duration {
	if c.ReplicaTTL > 0 {
		return c.ReplicaTTL
	}
	return autopilot.DefaultReplicaTTL
}
