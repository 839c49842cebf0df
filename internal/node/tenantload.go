package node

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// Tenant load: with tenants declared, every data request is resolved to its
// tenant and counted (no allocation, one atomic add), and each node tells
// the leader every tenantLoadEvery what share of its requests each tenant
// had and how fast it shed: the capacity policy's input for choosing the
// tenant a hot node asks a node for.
const (
	pathTenantLoad  = "/internal/v1/tenant-load"
	tenantLoadEvery = time.Second
	// maxTenantLoads bounds the leader's latest-load-per-node map.
	maxTenantLoads = 1024
	// tenantLoadForget drops a silent node's load.
	tenantLoadForget = time.Minute
)

// tenantCounts counts data requests per declared tenant.
type tenantCounts struct {
	resolver *tenant.Resolver
	index    map[string]int // tenant -> counts index; read-only
	names    []string       // by index
	counts   []atomic.Int64 // requests resolved to names[i]
}

// tenantLoad is one node's tenant load report.
type tenantLoad struct {
	Node     string          `json:"node"`
	At       time.Time       `json:"at"`
	ShedRate float64         `json:"shed_rate"` // data requests shed per second
	Mem      float64         `json:"mem"`       // bytes in use beside the store (memload.go)
	MemLimit float64         `json:"mem_limit"` // room the memory limit leaves beside the store; 0 unknown
	Tenants  []capacity.Load `json:"tenants"`   // requests per second by tenant
}

func newTenantCounts(c *tenant.Config) tenantCounts {
	tc := tenantCounts{resolver: tenant.NewResolver(c), index: map[string]int{}}
	if c == nil {
		return tc
	}
	for name := range c.Tenants {
		tc.index[name] = len(tc.names)
		tc.names = append(tc.names, name)
	}
	tc.counts = make([]atomic.Int64, len(tc.names))
	return tc
}

// tenantOf is r's tenant ("" without declared tenants or when nothing
// resolves and no default is set). The serving path's hook: plan with
// n.router.PlanFor(n.tenantOf(r), hash, buf) to own keys within the
// tenant's node set.
func (n *Node) tenantOf(r *http.Request) string { return n.tenants.counts.resolver.Resolve(r) }

// withTenants counts each data request for its tenant before next serves
// it. Without declared tenants it is next itself.
func (n *Node) withTenants(next http.Handler) http.Handler {
	tc := &n.tenants.counts
	if len(tc.names) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i, ok := tc.index[n.tenantOf(r)]; ok {
			tc.counts[i].Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

// reportTenantLoad sends this node's tenant load to the leader until ctx
// is done. A report that cannot be delivered is dropped and counted; the
// next one replaces it.
func (n *Node) reportTenantLoad(ctx context.Context) error {
	tc := &n.tenants.counts
	t := time.NewTicker(tenantLoadEvery)
	defer t.Stop()
	last := make([]int64, len(tc.names))
	lastShed := counterValue(n.m.requests[resShed])
	lastAt := n.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := n.cfg.Now()
		secs := now.Sub(lastAt).Seconds()
		if secs <= 0 {
			continue
		}
		rep := tenantLoad{Node: n.cfg.ID, At: now}
		for i, name := range tc.names {
			c := tc.counts[i].Load()
			if d := c - last[i]; d > 0 {
				rep.Tenants = append(rep.Tenants, capacity.Load{Tenant: name, Share: float64(d) / secs})
			}
			last[i] = c
		}
		shed := counterValue(n.m.requests[resShed])
		rep.ShedRate = (shed - lastShed) / secs
		rep.Mem, rep.MemLimit = n.memLoad()
		lastShed, lastAt = shed, now
		if n.ap.election.IsLeader() {
			n.offerTenantLoad(rep)
			continue
		}
		if err := n.sendTenantLoad(ctx, rep); err != nil {
			n.m.shed("tenant_report")
			n.ap.cachedLeader.Store(nil)
			n.cfg.Logger.Debug("tenant load not delivered", "err", err)
		}
	}
}

func (n *Node) sendTenantLoad(ctx context.Context, rep tenantLoad) error {
	l, err := n.findLeader(ctx)
	if err != nil {
		return err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return n.adminCall(ctx, http.MethodPost, l.id, l.admin, pathTenantLoad, body, nil)
}

// offerTenantLoad keeps rep as its node's latest, within the bound.
func (n *Node) offerTenantLoad(rep tenantLoad) {
	tp := &n.tenants
	tp.loadMu.Lock()
	defer tp.loadMu.Unlock()
	if tp.loads == nil {
		tp.loads = map[string]tenantLoad{}
	}
	if _, ok := tp.loads[rep.Node]; !ok && len(tp.loads) >= maxTenantLoads {
		n.m.shed("tenant_report")
		return
	}
	if len(rep.Tenants) > len(tp.counts.names) {
		rep.Tenants = rep.Tenants[:len(tp.counts.names)]
	}
	tp.loads[rep.Node] = rep
}

// handleTenantLoad receives a node's tenant load (leader only).
func (n *Node) handleTenantLoad(w http.ResponseWriter, r *http.Request) {
	if !n.ap.election.IsLeader() {
		writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "not the autopilot leader"})
		return
	}
	var rep tenantLoad
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReportBytes)).Decode(&rep); err != nil || rep.Node == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a tenant load report"})
		return
	}
	n.offerTenantLoad(rep)
	w.WriteHeader(http.StatusNoContent)
}

// tenantLoads returns the latest load per node, dropping silent nodes.
func (n *Node) tenantLoads(now time.Time) map[string]tenantLoad {
	tp := &n.tenants
	tp.loadMu.Lock()
	defer tp.loadMu.Unlock()
	out := make(map[string]tenantLoad, len(tp.loads))
	for id, l := range tp.loads {
		if now.Sub(l.At) > tenantLoadForget {
			delete(tp.loads, id)
			continue
		}
		out[id] = l
	}
	return out
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if c == nil || c.Write(&m) != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}
