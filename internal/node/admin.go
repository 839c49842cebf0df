package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crowdpilot/crowdpilot/internal/purge"
)

// adminHandler serves health, readiness, metrics and the JSON API.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.Ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not ready: membership not joined"})
			return
		}
		if n.drainState().Draining {
			http.Error(w, "not ready: draining", http.StatusServiceUnavailable) // load balancers: send elsewhere
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.cfg.Registry, promhttp.HandlerOpts{Registry: n.cfg.Registry}))
	mux.HandleFunc("GET /api/v1/cluster", n.handleCluster)
	// Profiles cost CPU and reveal internals: token only.
	mux.Handle("/debug/pprof/", n.authorized(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/profile", n.authorized(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/trace", n.authorized(http.HandlerFunc(pprof.Trace)))
	mux.HandleFunc("GET /api/v1/hot", n.keysView(n.handleHot))
	mux.HandleFunc("GET /api/v1/events", n.keysView(n.handleEvents))
	mux.Handle("POST "+pathHeat, n.authorized(http.HandlerFunc(n.handleHeat)))
	mux.Handle("POST "+pathReplicate, n.authorized(http.HandlerFunc(n.handleReplicate)))
	mux.Handle("/api/v1/purge", n.authorized(purge.NewHandler(n.purgeLog, n.members.Members, n.cfg.Logger)))
	n.mountUI(mux) // the dashboard (ui.go)
	n.mountTenants(mux)
	n.mountObjects(mux) // pins and caps (objects.go)
	return jsonMuxErrors{mux}
}

// jsonMuxErrors answers what the mux itself refuses (no route: 404; a
// route for other methods: 405 with Allow) as the handlers answer their
// own errors: a JSON {"error": "..."}, instead of the mux's plain text.
type jsonMuxErrors struct{ mux *http.ServeMux }

func (j jsonMuxErrors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := j.mux.Handler(r)
	if pattern != "" {
		j.mux.ServeHTTP(w, r)
		return
	}
	// No pattern: h is the mux's own error (or redirect) handler. Learn its
	// status and headers without letting it write.
	probe := &headerProbe{h: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.code {
	case http.StatusNotFound:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no admin endpoint %s %s (see /api/v1/cluster, /api/v1/hot, /api/v1/events, /api/v1/purge, /api/v1/objects, /api/v1/tenants, /metrics, /healthz, /readyz)", r.Method, r.URL.Path)})
	case http.StatusMethodNotAllowed:
		allow := probe.h.Get("Allow")
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow)})
	default: // a redirect to the cleaned path, or anything else the mux does
		j.mux.ServeHTTP(w, r)
	}
}

// headerProbe records what a handler would answer, and discards the body.
type headerProbe struct {
	h    http.Header
	code int
}

func (p *headerProbe) Header() http.Header { return p.h }

func (p *headerProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

func (p *headerProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// memberView is one member in /api/v1/cluster.
type memberView struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Admin    string `json:"admin"`
	Peer     string `json:"peer,omitempty"` // peer listener, with peer TLS
	Zone     string `json:"zone,omitempty"`
	State    string `json:"state"` // up, draining
	PurgeRev int64  `json:"purge_rev"`
}

func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	ms := n.members.Members()
	out := struct {
		Self    string       `json:"self"`
		Ready   bool         `json:"ready"`
		Time    time.Time    `json:"time"`
		Members []memberView `json:"members"`
	}{Self: n.cfg.ID, Ready: n.Ready(), Time: n.cfg.Now().UTC(), Members: make([]memberView, 0, len(ms))}
	for _, m := range ms {
		state := "up"
		if m.Draining {
			state = "draining"
		}
		out.Members = append(out.Members, memberView{ID: m.ID, Addr: m.Addr, Admin: m.Admin, Peer: m.Peer, Zone: m.Zone, State: state, PurgeRev: m.PurgeRev})
	}
	writeJSON(w, http.StatusOK, out)
}

// authorized checks a mutating admin call: the operator's bearer token, or
// another node's peer proof for this very call (peerproof.go).
func (n *Node) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.hasToken(r) {
			next.ServeHTTP(w, r)
			return
		}
		ok, err := n.peerProved(w, r)
		if errors.Is(err, errPeerBodyTooLarge) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body over %d bytes", maxPeerBodyBytes)})
			return
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="crowdpilot"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeJSON answers v as indented JSON, with <, > and & as they are (keys
// and reasons are read by people and tools, not embedded in HTML).
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
