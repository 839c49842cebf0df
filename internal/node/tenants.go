package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/capacity"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/route"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// tenantParts is a node's view of the tenants: what --tenants declared and
// the records in etcd (sizes, operator overrides), merged into the router's
// tenant sets on every change. Without declared tenants it does nothing and
// routing is exactly as without tenants.
type tenantParts struct {
	declared *tenant.Config // nil: no tenants
	store    *cluster.TenantStore

	manager *capacity.Manager    // sizes the tenants while this node leads; nil without tenants or autopilot
	sizes   *prometheus.GaugeVec // crowdpilot_tenant_nodes by tenant (the declared ones only)

	mu      sync.Mutex                      // guards records
	records map[string]cluster.TenantRecord // as last watched

	counts tenantCounts // data requests per tenant (tenantload.go)

	loadMu sync.Mutex            // guards loads
	loads  map[string]tenantLoad // leader: each node's latest tenant load, at most maxTenantLoads
}

// init sets the declared tenants (nil: none), before the node serves.
func (tp *tenantParts) init(declared *tenant.Config) {
	tp.declared = declared
	tp.counts = newTenantCounts(declared)
}

// startTenants sets the declared tenants' sets at their min and follows
// their records in etcd.
func (n *Node) startTenants(ctx context.Context) {
	tp := &n.tenants
	if tp.declared == nil || len(tp.declared.Tenants) == 0 {
		return
	}
	tp.store = cluster.NewTenantStore(n.etcd, n.cfg.Cluster, n.records)
	tp.sizes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "crowdpilot_tenant_nodes",
		Help: "Nodes in each declared tenant's set as this node routes it (its size, or fewer when fewer are eligible).",
	}, []string{"tenant"})
	if err := n.cfg.Registry.Register(tp.sizes); err != nil {
		n.cfg.Logger.Error("tenant metrics not registered", "err", err)
		tp.sizes = nil
	}
	if !n.cfg.DisableAutopilot {
		pc := capacity.DefaultConfig()
		if n.cfg.Capacity != nil {
			pc = *n.cfg.Capacity
		}
		m, err := capacity.NewManager(capacity.ManagerConfig{
			Policy: pc, Store: tp.store, Tenants: n.capacityTenants, Reports: n.capacityReports,
			Tick: n.cfg.ReportInterval, MaxEvents: 512, Now: n.cfg.Now,
			Logger: n.cfg.Logger, Registerer: n.cfg.Registry,
		})
		if err != nil {
			// The config was validated with the node's; only a clash of
			// metrics could get here.
			n.cfg.Logger.Error("capacity manager not started", "err", err)
		}
		tp.manager = m
		n.goLoop(ctx, "tenant load reporter", n.reportTenantLoad)
	}
	n.onTenantRecords(nil)
	w := tp.store.Watcher(n.onTenantRecords, n.cfg.Logger)
	n.goLoop(ctx, "tenant records", func(ctx context.Context) error { w.Run(ctx); return nil })
}

// runCapacity runs the capacity manager while this node leads (ctx is the
// term); the channel closes when it has stopped.
func (n *Node) runCapacity(ctx context.Context, fence cluster.Fence) <-chan struct{} {
	done := make(chan struct{})
	m := n.tenants.manager
	if m == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := m.Run(ctx, fence.Cmp()); err != nil && !errors.Is(err, context.Canceled) {
			n.cfg.Logger.Warn("capacity manager stopped", "err", err)
		}
	}()
	return done
}

// capacityTenants is the declared tenants as the capacity policy sees them:
// effective bounds and size, the nodes they may use and the set routed to.
func (n *Node) capacityTenants() []capacity.Tenant {
	tp := &n.tenants
	tp.mu.Lock()
	recs := tp.records
	tp.mu.Unlock()
	peers := n.router.Peers()
	out := make([]capacity.Tenant, 0, len(tp.declared.Tenants))
	for _, name := range slices.Sorted(maps.Keys(tp.declared.Tenants)) {
		e := effective(tp.declared.Tenants[name], recs[name])
		spec := route.TenantSpec{Name: name, Size: e.Size, Labels: e.Labels, Pin: e.Pin, Exclude: e.Exclude}
		nodes, _ := n.router.TenantPeers(name)
		t := capacity.Tenant{Name: name, Size: e.Size, Min: e.Min, Max: capacity.NoMax, Eligible: route.Eligible(spec, peers), Nodes: nodes}
		if e.Max != nil {
			t.Max = *e.Max
		}
		if e.Hold {
			size := e.Size
			t.Override.Size = &size
		}
		out = append(out, t)
	}
	return out
}

// capacityReports is the nodes' load as this leader last heard it: CPU
// from the heat reports; tenant shares, shed rates and memory beside the
// store from the tenant load reports (the store fills by design, so only
// what grows outside its bound is judged; memload.go).
func (n *Node) capacityReports() []capacity.Report {
	byNode := map[string]*capacity.Report{}
	for id, l := range n.tenantLoads(n.cfg.Now()) {
		byNode[id] = &capacity.Report{Node: id, At: l.At, ShedRate: l.ShedRate, Tenants: l.Tenants, Mem: l.Mem, MemLimit: l.MemLimit}
	}
	if n.ap.leader != nil {
		for _, l := range n.ap.leader.Loads() {
			r, ok := byNode[l.Node]
			if !ok {
				r = &capacity.Report{Node: l.Node, At: l.At}
				byNode[l.Node] = r
			}
			r.CPU, r.CPULimit = l.CPU, l.CPULimit
		}
	}
	out := make([]capacity.Report, 0, len(byNode))
	for _, id := range slices.Sorted(maps.Keys(byNode)) {
		out = append(out, *byNode[id])
	}
	return out
}

func (n *Node) onTenantRecords(recs map[string]cluster.TenantRecord) {
	tp := &n.tenants
	tp.mu.Lock()
	old := tp.records
	tp.records = recs
	specs := tenantSpecs(tp.declared, recs)
	tp.mu.Unlock()
	n.router.SetTenants(specs)
	if tp.sizes != nil {
		for _, s := range specs {
			ids, _ := n.router.TenantPeers(s.Name)
			tp.sizes.WithLabelValues(s.Name).Set(float64(len(ids)))
		}
	}
	// The leader lists operators' changes with its own decisions.
	if m := tp.manager; m != nil && n.ap.election.IsLeader() {
		for name, rec := range recs {
			if prev, ok := old[name]; rec.By == "operator" && (!ok || !prev.Updated.Equal(rec.Updated)) {
				m.Record(capacity.Event{Time: rec.Updated, Tenant: name, Action: "operator", To: rec.Size,
					Reason: fmt.Sprintf("operator set size %d, hold %v: %s", rec.Size, rec.Hold, orDefault(rec.Reason, "no reason given"))})
			}
		}
	}
}

// effectiveTenant is a declared tenant with its record's overrides applied.
type effectiveTenant struct {
	Name    string            `json:"name"`
	Size    int               `json:"size"`
	Hold    bool              `json:"hold,omitempty"`
	Min     int               `json:"min"`
	Max     *int              `json:"max,omitempty"` // nil: no max
	Labels  map[string]string `json:"labels,omitempty"`
	Pin     []string          `json:"pin,omitempty"`
	Exclude []string          `json:"exclude,omitempty"`
}

// effective merges a declaration and its record: the record's overrides
// win; the size is the record's (the min when unset), within the bounds.
func effective(t tenant.Tenant, rec cluster.TenantRecord) effectiveTenant {
	e := effectiveTenant{Name: t.Name, Min: t.MinSize(), Labels: t.Labels, Pin: t.Pin, Exclude: t.Exclude, Hold: rec.Hold}
	if mx, ok := t.MaxSize(); ok {
		e.Max = &mx
	}
	if rec.Min != nil {
		e.Min = *rec.Min
	}
	if rec.Max != nil {
		e.Max = rec.Max
	}
	if rec.Labels != nil {
		e.Labels = *rec.Labels
	}
	if rec.Pin != nil {
		e.Pin = *rec.Pin
	}
	if rec.Exclude != nil {
		e.Exclude = *rec.Exclude
	}
	e.Size = e.Min
	if rec.Size > 0 {
		e.Size = max(rec.Size, e.Min)
	}
	if e.Max != nil {
		e.Size = min(e.Size, *e.Max)
	}
	return e
}

// tenantSpecs is the router's view of the declared tenants, sorted by name.
func tenantSpecs(decl *tenant.Config, recs map[string]cluster.TenantRecord) []route.TenantSpec {
	if decl == nil {
		return nil
	}
	out := make([]route.TenantSpec, 0, len(decl.Tenants))
	for _, name := range slices.Sorted(maps.Keys(decl.Tenants)) {
		e := effective(decl.Tenants[name], recs[name])
		out = append(out, route.TenantSpec{Name: name, Size: e.Size, Labels: e.Labels, Pin: e.Pin, Exclude: e.Exclude})
	}
	return out
}

func (n *Node) mountTenants(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/tenants", n.handleTenants)
	mux.HandleFunc("GET /api/v1/tenants/{name}", n.handleTenant)
	mux.Handle("PUT /api/v1/tenants/{name}", n.authorized(http.HandlerFunc(n.handlePutTenant)))
	mux.HandleFunc("GET /api/v1/capacity/events", n.handleCapacityEvents)
	mux.Handle("POST "+pathTenantLoad, n.authorized(http.HandlerFunc(n.handleTenantLoad)))
}

// handleCapacityEvents lists the capacity manager's recent decisions and
// alarms, with reasons (answered by the leader, proxied by the others).
func (n *Node) handleCapacityEvents(w http.ResponseWriter, r *http.Request) {
	if m := n.tenants.manager; m != nil && n.ap.election.IsLeader() {
		writeJSON(w, http.StatusOK, map[string]any{"leader": n.cfg.ID, "events": m.Events(200)})
		return
	}
	if n.tenants.declared == nil || len(n.tenants.declared.Tenants) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"events": []capacity.Event{}})
		return
	}
	n.proxyToLeader(w, r)
}

// tenantView is one tenant in /api/v1/tenants.
type tenantView struct {
	effectiveTenant
	Nodes    []string              `json:"nodes"`              // its node set as this node routes
	Fallback bool                  `json:"fallback,omitempty"` // no node eligible: served by all
	Declared tenant.Tenant         `json:"declared"`
	Record   *cluster.TenantRecord `json:"record,omitempty"` // nil: nothing in etcd
}

func (n *Node) tenantView(name string) (tenantView, bool) {
	tp := &n.tenants
	if tp.declared == nil {
		return tenantView{}, false
	}
	t, ok := tp.declared.Tenants[name]
	if !ok {
		return tenantView{}, false
	}
	tp.mu.Lock()
	rec, has := tp.records[name]
	tp.mu.Unlock()
	v := tenantView{effectiveTenant: effective(t, rec), Declared: t}
	if has {
		v.Record = &rec
	}
	v.Nodes, v.Fallback = n.router.TenantPeers(name)
	return v, true
}

func (n *Node) handleTenants(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Tenants []tenantView `json:"tenants"`
	}{Tenants: []tenantView{}}
	if d := n.tenants.declared; d != nil {
		for _, name := range slices.Sorted(maps.Keys(d.Tenants)) {
			v, _ := n.tenantView(name)
			out.Tenants = append(out.Tenants, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleTenant(w http.ResponseWriter, r *http.Request) {
	v, ok := n.tenantView(r.PathValue("name"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("tenant %q is not declared (--tenants)", r.PathValue("name"))})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// maxTenantBody bounds a PUT body.
const maxTenantBody = 64 << 10

// badTenant is a PUT that is wrong: 400, nothing written.
type badTenant struct{ msg string }

func (e badTenant) Error() string { return e.msg }

// handlePutTenant changes a tenant's record. The body is a JSON object of
// the fields to change; null clears an override (back to the declaration):
//
//	{"size": 6, "hold": true, "min": 3, "max": 12,
//	 "labels": {"hw": "dedicated"}, "pin": ["n1"], "exclude": ["n4"],
//	 "reason": "ticket sale at 20:00"}
func (n *Node) handlePutTenant(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	tp := &n.tenants
	var decl tenant.Tenant
	ok := false
	if tp.declared != nil {
		decl, ok = tp.declared.Tenants[name]
	}
	if !ok || tp.store == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("tenant %q is not declared (--tenants)", name)})
		return
	}
	patch, err := decodeTenantPatch(http.MaxBytesReader(w, r.Body, maxTenantBody))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	rec, err := tp.store.Update(r.Context(), name, func(rec *cluster.TenantRecord) error {
		if err := patch.apply(rec); err != nil {
			return err
		}
		if patch.size == nil && rec.Size > 0 {
			// New bounds carry the size along (a size given with them
			// must fit them).
			e := effective(decl, *rec)
			rec.Size = e.Size
		}
		rec.By, rec.Updated = "operator", n.cfg.Now().UTC()
		if patch.reason != nil {
			rec.Reason = *patch.reason
		} else {
			rec.Reason = ""
		}
		return validateTenant(decl, *rec)
	})
	var bad badTenant
	switch {
	case errors.As(err, &bad):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": bad.msg})
		return
	case err != nil:
		n.cfg.Logger.Warn("tenant update failed", "tenant", name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "etcd: " + err.Error()})
		return
	}
	n.cfg.Logger.Info("tenant changed by operator", "tenant", name, "size", rec.Size, "hold", rec.Hold, "reason", rec.Reason)
	e := effective(decl, rec)
	writeJSON(w, http.StatusOK, tenantView{effectiveTenant: e, Declared: decl, Record: &rec})
}

// tenantPatch is a decoded PUT body: for each field, whether it was given
// and its value (nil: null, clear it).
type tenantPatch struct {
	size, min, max *optional[int]
	hold           *bool
	labels         *optional[map[string]string]
	pin, exclude   *optional[[]string]
	reason         *string
}

type optional[T any] struct {
	v   T
	set bool // false: null
}

func decodeTenantPatch(body interface{ Read([]byte) (int, error) }) (tenantPatch, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(body)
	if err := dec.Decode(&raw); err != nil {
		return tenantPatch{}, fmt.Errorf("body: want a JSON object: %w", err)
	}
	var p tenantPatch
	for k, v := range raw {
		var err error
		switch k {
		case "size":
			p.size, err = decodeOptional[int](v)
		case "min":
			p.min, err = decodeOptional[int](v)
		case "max":
			p.max, err = decodeOptional[int](v)
		case "labels":
			p.labels, err = decodeOptional[map[string]string](v)
		case "pin":
			p.pin, err = decodeOptional[[]string](v)
		case "exclude":
			p.exclude, err = decodeOptional[[]string](v)
		case "hold":
			var b bool
			err = json.Unmarshal(v, &b)
			p.hold = &b
		case "reason":
			var s string
			err = json.Unmarshal(v, &s)
			p.reason = &s
		default:
			return tenantPatch{}, fmt.Errorf("body: unknown field %q (want size, hold, min, max, labels, pin, exclude, reason)", k)
		}
		if err != nil {
			return tenantPatch{}, fmt.Errorf("body: field %q: %w", k, err)
		}
	}
	if len(raw) == 0 {
		return tenantPatch{}, errors.New("body: no field to change")
	}
	return p, nil
}

func decodeOptional[T any](raw json.RawMessage) (*optional[T], error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return &optional[T]{}, nil
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return &optional[T]{v: v, set: true}, nil
}

func (p tenantPatch) apply(rec *cluster.TenantRecord) error {
	if p.size != nil {
		if p.size.set && p.size.v < 1 {
			return badTenant{fmt.Sprintf("size %d: must be at least 1", p.size.v)}
		}
		rec.Size = p.size.v // null: 0, unset
	}
	if p.hold != nil {
		rec.Hold = *p.hold
	}
	setPtr(&rec.Min, p.min)
	setPtr(&rec.Max, p.max)
	setPtr(&rec.Labels, p.labels)
	setPtr(&rec.Pin, p.pin)
	setPtr(&rec.Exclude, p.exclude)
	return nil
}

func setPtr[T any](dst **T, o *optional[T]) {
	switch {
	case o == nil:
	case !o.set:
		*dst = nil
	default:
		v := o.v
		*dst = &v
	}
}

// validateTenant checks a record against its declaration: the bounds it
// makes, and that its size is within them when it sets one.
func validateTenant(decl tenant.Tenant, rec cluster.TenantRecord) error {
	e := effective(decl, rec)
	if e.Min < 1 {
		return badTenant{fmt.Sprintf("min %d: must be at least 1", e.Min)}
	}
	if e.Max != nil && *e.Max < e.Min {
		return badTenant{fmt.Sprintf("max %d is below min %d", *e.Max, e.Min)}
	}
	if rec.Size > 0 && rec.Size < e.Min {
		return badTenant{fmt.Sprintf("size %d is below min %d", rec.Size, e.Min)}
	}
	if rec.Size > 0 && e.Max != nil && rec.Size > *e.Max {
		return badTenant{fmt.Sprintf("size %d is above max %d", rec.Size, *e.Max)}
	}
	if rec.Hold && rec.Size == 0 {
		return badTenant{"hold needs a size"}
	}
	for k := range e.Labels {
		if k == "" {
			return badTenant{"labels: empty label name"}
		}
	}
	for _, id := range e.Pin {
		if slices.Contains(e.Exclude, id) {
			return badTenant{fmt.Sprintf("node %q is both pinned and excluded", id)}
		}
	}
	if e.Max != nil && len(e.Pin) > *e.Max {
		return badTenant{fmt.Sprintf("%d pinned nodes exceed max %d", len(e.Pin), *e.Max)}
	}
	for _, id := range slices.Concat(e.Pin, e.Exclude) {
		if id == "" || strings.ContainsAny(id, " \t") {
			return badTenant{fmt.Sprintf("node %q: want a node ID", id)}
		}
	}
	return nil
}
