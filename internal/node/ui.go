package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/web"
)

// statsPeerTimeout bounds one peer's answer to a cluster-wide stats call:
// the dashboard polls once a second, so a slower peer is left out of that
// sample rather than holding it.
const statsPeerTimeout = 800 * time.Millisecond

// drainBodyBytes bounds the body of POST /api/v1/drain.
const drainBodyBytes = 1 << 10

// mountUI adds the dashboard and the endpoints only it needs: GET / (a
// redirect), GET /ui/, GET /api/v1/stats and POST /api/v1/drain.
func (n *Node) mountUI(mux *http.ServeMux) {
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	mux.Handle("GET /ui/", http.StripPrefix("/ui", web.Handler()))
	mux.HandleFunc("GET /api/v1/stats", n.handleStats)
	mux.Handle("POST /api/v1/drain", n.authorized(http.HandlerFunc(n.handleDrain)))
	mux.HandleFunc("GET /api/v1/drain", n.handleDrainStatus) // handoff.go
}

// nodeStats is one node's cumulative counters, read from its own registry.
// Rates are the reader's business (the dashboard polls once a second and
// takes differences), so nothing is kept here between calls.
type nodeStats struct {
	Node string    `json:"node"`
	Time time.Time `json:"time"`
	// Requests is crowdpilot_requests_total by result.
	Requests map[string]float64 `json:"requests"`
	// OriginFetches is crowdpilot_origin_fetches_total over every result
	// but shed (a shed fetch never reached the origin).
	OriginFetches float64 `json:"origin_fetches"`
	// Shed is crowdpilot_shed_total over every reason.
	Shed     float64 `json:"shed"`
	InFlight float64 `json:"in_flight"`
	Error    string  `json:"error,omitempty"` // set instead of the counters when a peer did not answer
}

// handleStats is GET /api/v1/stats: this node's counters, or with
// ?scope=cluster every live member's (asked in parallel, each within
// statsPeerTimeout; a member that does not answer is listed with an error).
func (n *Node) handleStats(w http.ResponseWriter, r *http.Request) {
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", "node":
		st, err := n.localStats()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	case "cluster":
		writeJSON(w, http.StatusOK, map[string]any{"self": n.cfg.ID, "nodes": n.clusterStats(r.Context())})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("scope %q: want node or cluster", scope)})
	}
}

func (n *Node) localStats() (nodeStats, error) {
	st := nodeStats{Node: n.cfg.ID, Time: n.cfg.Now().UTC(), Requests: make(map[string]float64)}
	fams, err := n.cfg.Registry.Gather()
	if err != nil {
		return st, fmt.Errorf("gather metrics: %w", err)
	}
	for _, f := range fams {
		switch f.GetName() {
		case "crowdpilot_requests_total":
			for _, m := range f.GetMetric() {
				st.Requests[label(m, "result")] += m.GetCounter().GetValue()
			}
		case "crowdpilot_origin_fetches_total":
			for _, m := range f.GetMetric() {
				if label(m, "result") != "shed" {
					st.OriginFetches += m.GetCounter().GetValue()
				}
			}
		case "crowdpilot_shed_total":
			for _, m := range f.GetMetric() {
				st.Shed += m.GetCounter().GetValue()
			}
		case "crowdpilot_inflight_requests":
			for _, m := range f.GetMetric() {
				st.InFlight += m.GetGauge().GetValue()
			}
		}
	}
	return st, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// clusterStats asks every live member for its stats, one goroutine per
// member (bounded by the membership), each bounded by statsPeerTimeout.
func (n *Node) clusterStats(ctx context.Context) []nodeStats {
	ms := n.members.Members()
	out := make([]nodeStats, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		if m.ID == n.cfg.ID {
			st, err := n.localStats()
			if err != nil {
				st.Error = err.Error()
			}
			out[i] = st
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.peerStats(ctx, m)
			if err != nil {
				st = nodeStats{Node: m.ID, Error: err.Error()}
			}
			out[i] = st
		}()
	}
	wg.Wait()
	return out
}

func (n *Node) peerStats(ctx context.Context, m cluster.Member) (nodeStats, error) {
	ctx, cancel := context.WithTimeout(ctx, statsPeerTimeout)
	defer cancel()
	var st nodeStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.callURL(n.callAddrOf(m), "/api/v1/stats"), nil)
	if err != nil {
		return st, fmt.Errorf("stats of %s: %w", m.ID, err)
	}
	resp, err := n.ap.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("stats of %s: %w", m.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("stats of %s: status %d", m.ID, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("stats of %s: %w", m.ID, err)
	}
	return st, nil
}

// drainRequest is the body of POST /api/v1/drain. An empty body drains
// this node.
type drainRequest struct {
	// Node is the member to drain; empty means this node. Another member's
	// drain is passed on to its own admin listener with the same token.
	Node string `json:"node,omitempty"`
	// Draining false undrains; absent means true.
	Draining *bool `json:"draining,omitempty"`
}

// handleDrain is POST /api/v1/drain: marks a member's own record as draining
// (or not), so routers stop sending it keys (see onMembers) and the
// autopilot places no replica on it. Answers the member's view as in
// /api/v1/cluster.
func (n *Node) handleDrain(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, drainBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body over %d bytes", drainBodyBytes)})
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read body: " + err.Error()})
		return
	}
	var req drainRequest
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body: want {"node": "<id>", "draining": true|false}: ` + err.Error()})
			return
		}
		if dec.More() {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: one JSON object only"})
			return
		}
	}
	draining := req.Draining == nil || *req.Draining
	if req.Node != "" && req.Node != n.cfg.ID {
		n.forwardDrain(w, r, req.Node, draining)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	err = n.members.Update(ctx, func(m *cluster.Member) { m.Draining = draining })
	if err != nil && !errors.Is(err, cluster.ErrNotRegistered) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "update member record: " + err.Error()})
		return
	}
	// ErrNotRegistered: kept, published at the next registration.
	n.cfg.Logger.Info("drain set", "id", n.cfg.ID, "draining", draining)
	n.onDrainSet(draining) // hand its objects to their new owners (handoff.go)
	state := "up"
	if draining {
		state = "draining"
	}
	writeJSON(w, http.StatusOK, memberView{ID: n.self.ID, Addr: n.self.Addr, Admin: n.self.Admin, Peer: n.self.Peer, Zone: n.self.Zone, State: state, PurgeRev: n.purgeRev.Load()})
}

// forwardDrain passes a drain for another member to that member's admin
// listener, signed with this node's peer proof (the caller's token stays
// here: it was checked by authorized).
func (n *Node) forwardDrain(w http.ResponseWriter, r *http.Request, id string, draining bool) {
	var target *cluster.Member
	for _, m := range n.members.Members() {
		if m.ID == id {
			target = &m
			break
		}
	}
	if target == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("node %q is not a live member", id)})
		return
	}
	b, _ := json.Marshal(drainRequest{Draining: &draining})
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, n.callURL(n.callAddrOf(*target), "/api/v1/drain"), bytes.NewReader(b))
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	n.signPeerCall(req, target.ID, b)
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.ap.client.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("drain %s: %v", id, err)})
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 64<<10))
}
