package node

// Operators' settings per object: pin N (the autopilot keeps at least N
// leased replicas of the key) and cap N (at most N). They live in etcd
// (cluster.ObjectStore); every node watches them, so any node answers the
// admin API, and the autopilot leader reads them every tick.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// maxObjectBody bounds a PUT /api/v1/objects body.
const maxObjectBody = 16 << 10

// objectParts are the object settings as this node sees them.
type objectParts struct {
	store   *cluster.ObjectStore
	refused prometheus.Counter // crowdpilot_object_settings_refused_total: creates beyond the bound

	mu       sync.Mutex                       // guards settings and loaded
	settings map[uint64]cluster.ObjectSetting // as last watched
	loaded   bool

	limits atomic.Pointer[[]autopilot.KeyLimits] // the leader's view of settings, rebuilt on change
}

// newObjects builds the store and the metrics; startObjects follows etcd.
func (n *Node) newObjects() error {
	op := &n.ap.objects
	var err error
	if op.store, err = cluster.NewObjectStore(n.etcd, n.cfg.Cluster, httpcache.KeyHash, n.cfg.MaxObjectSettings, n.records); err != nil {
		return err
	}
	op.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crowdpilot_object_settings_refused_total",
		Help: "New object settings (pins, caps) refused because the cluster held --max-object-settings of them.",
	})
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crowdpilot_object_settings",
		Help: "Operators' object settings (pins, caps) in etcd as this node last saw them.",
	}, func() float64 {
		op.mu.Lock()
		defer op.mu.Unlock()
		return float64(len(op.settings))
	})
	for _, c := range []prometheus.Collector{op.refused, held} {
		if err := n.cfg.Registry.Register(c); err != nil {
			return fmt.Errorf("object settings metrics: %w", err)
		}
	}
	return nil
}

// startObjects follows the settings in etcd until ctx is done.
func (n *Node) startObjects(ctx context.Context) {
	w := n.ap.objects.store.Watcher(n.onObjectSettings, n.cfg.Logger)
	n.goLoop(ctx, "object settings", func(ctx context.Context) error { w.Run(ctx); return nil })
}

// objectLimits is the settings as the autopilot leader reads them.
func (n *Node) objectLimits() []autopilot.KeyLimits {
	if p := n.ap.objects.limits.Load(); p != nil {
		return *p
	}
	return nil
}

// onObjectSettings keeps the watched settings, rebuilds the leader's view,
// and, on the leader, lists operators' changes with its decisions.
func (n *Node) onObjectSettings(sets map[uint64]cluster.ObjectSetting) {
	op := &n.ap.objects
	limits := make([]autopilot.KeyLimits, 0, len(sets))
	for _, h := range slices.Sorted(maps.Keys(sets)) {
		s := sets[h]
		limits = append(limits, autopilot.KeyLimits{Key: s.Key, Hash: h, Limits: autopilot.Limits{Pin: s.Pin, Cap: s.Cap, Reason: s.Reason}})
	}
	op.limits.Store(&limits)
	op.mu.Lock()
	old, first := op.settings, !op.loaded
	op.settings, op.loaded = sets, true
	op.mu.Unlock()

	l := n.ap.leader
	if first || l == nil || !n.ap.election.IsLeader() {
		return
	}
	now := n.cfg.Now()
	for _, h := range slices.Sorted(maps.Keys(sets)) {
		s := sets[h]
		if prev, ok := old[h]; ok && prev.Updated.Equal(s.Updated) {
			continue
		}
		l.Record(autopilot.Event{Time: orNow(s.Updated, now), Key: s.Key, Action: autopilot.EventOperator, Reason: describeSetting(s)})
	}
	for _, h := range slices.Sorted(maps.Keys(old)) {
		if _, ok := sets[h]; !ok {
			reason := "operator cleared the pin and cap"
			if u := old[h].Until; !u.IsZero() && !now.Before(u.Add(-2*time.Second)) {
				reason = "the operator's pin and cap lapsed (set until " + u.Format(time.RFC3339) + ")"
			}
			l.Record(autopilot.Event{Time: now, Key: old[h].Key, Action: autopilot.EventOperator, Reason: reason})
		}
	}
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// describeSetting says what an operator set, for events.
func describeSetting(s cluster.ObjectSetting) string {
	var parts []string
	if s.Pin > 0 {
		parts = append(parts, fmt.Sprintf("pin %d (at least %d leased replicas)", s.Pin, s.Pin))
	}
	if s.Cap != nil {
		parts = append(parts, fmt.Sprintf("cap %d (at most %d leased replicas)", *s.Cap, *s.Cap))
	}
	r := "operator set " + strings.Join(parts, ", ")
	if !s.Until.IsZero() {
		r += " until " + s.Until.Format(time.RFC3339)
	}
	if s.Reason != "" {
		r += fmt.Sprintf(": %q", s.Reason)
	}
	return r
}

func (n *Node) mountObjects(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/objects", n.keysView(n.handleObjects))
	mux.Handle("PUT /api/v1/objects", n.authorized(http.HandlerFunc(n.handlePutObject)))
	mux.Handle("DELETE /api/v1/objects", n.authorized(http.HandlerFunc(n.handleDeleteObject)))
}

// objectsView is GET /api/v1/objects.
type objectsView struct {
	Objects []cluster.ObjectSetting `json:"objects"` // by key
	Max     int                     `json:"max"`     // the bound on settings
	// MaxLeased is the most leased replicas a pin or cap may name here:
	// --max-replicas less the owner.
	MaxLeased int `json:"max_leased"`
}

// handleObjects lists the settings as this node last saw them.
func (n *Node) handleObjects(w http.ResponseWriter, r *http.Request) {
	op := &n.ap.objects
	op.mu.Lock()
	out := objectsView{Objects: slices.Collect(maps.Values(op.settings)), Max: n.cfg.MaxObjectSettings, MaxLeased: n.maxLeased()}
	op.mu.Unlock()
	if out.Objects == nil {
		out.Objects = []cluster.ObjectSetting{}
	}
	slices.SortFunc(out.Objects, func(a, b cluster.ObjectSetting) int { return cmp.Compare(a.Key, b.Key) })
	writeJSON(w, http.StatusOK, out)
}

// maxLeased is the most leased replicas a key can have under this node's
// --max-replicas (which counts the owner).
func (n *Node) maxLeased() int {
	m := n.cfg.Autopilot.MaxReplicas
	if m == 0 {
		m = autopilot.DefaultMaxReplicas
	}
	return m - 1
}

// badObject is a request that is wrong: 400, nothing written.
type badObject struct{ msg string }

func (e badObject) Error() string { return e.msg }

// objectPatch is a decoded PUT body.
type objectPatch struct {
	key      string
	pin, cap *optional[int] // nil: unchanged; not set: cleared
	reason   *string
	// lasts is how long the setting holds from now: nil unchanged, not
	// set (JSON null) until cleared.
	lasts *optional[time.Duration]
}

func decodeObjectPatch(body []byte) (objectPatch, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return objectPatch{}, badObject{`body: want a JSON object such as {"key": "/live/match-1", "pin": 2}: ` + err.Error()}
	}
	var p objectPatch
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		v := raw[k]
		var err error
		switch k {
		case "key":
			err = json.Unmarshal(v, &p.key)
		case "pin":
			p.pin, err = decodeOptional[int](v)
		case "cap":
			p.cap, err = decodeOptional[int](v)
		case "reason":
			var s string
			err = json.Unmarshal(v, &s)
			p.reason = &s
		case "for":
			p.lasts, err = decodeFor(v)
		default:
			return objectPatch{}, badObject{fmt.Sprintf("body: unknown field %q (want key, pin, cap, for, reason)", k)}
		}
		if err != nil {
			what := "a string"
			switch k {
			case "pin", "cap":
				what = "a whole number or null"
			case "for":
				what = fmt.Sprintf("a duration above 0 and at most %v such as \"30m\", or null for no end", cluster.MaxObjectFor)
			}
			return objectPatch{}, badObject{fmt.Sprintf("body: field %q: want %s", k, what)}
		}
	}
	if p.key == "" {
		return objectPatch{}, badObject{`body: "key" is required`}
	}
	if p.pin == nil && p.cap == nil {
		return objectPatch{}, badObject{`body: nothing to change: give "pin" or "cap" (null clears one)`}
	}
	return p, nil
}

// decodeFor reads "for": a duration string in (0, cluster.MaxObjectFor], or
// null (the setting holds until cleared).
func decodeFor(v json.RawMessage) (*optional[time.Duration], error) {
	if string(v) == "null" {
		return &optional[time.Duration]{}, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > cluster.MaxObjectFor {
		return nil, fmt.Errorf("for %q: out of range", s)
	}
	return &optional[time.Duration]{v: d, set: true}, nil
}

// checkReplicas checks a pin's or cap's N against the bounds.
func (n *Node) checkReplicas(what string, o *optional[int]) error {
	if o == nil || !o.set {
		return nil
	}
	switch {
	case o.v < 0:
		return badObject{fmt.Sprintf("%s %d: must be >= 0", what, o.v)}
	case o.v > n.maxLeased():
		return badObject{fmt.Sprintf("%s %d is above --max-replicas %d less the owner: at most %d leased replicas", what, o.v, n.maxLeased()+1, n.maxLeased())}
	}
	return nil
}

// objectKey turns what an operator names into a base cache key: a path
// with its query ("/live/match-1?x=1"), an http(s) URL (its path and query:
// every node keys under the origin's host), or a key as /api/v1/hot shows
// it ("<origin host>/live/match-1"). With KeyHost, a URL or a key naming
// one of the allowed hosts (siteObjectKey).
func (n *Node) objectKey(s string) (string, error) {
	if n.cfg.KeyHost {
		return n.siteObjectKey(s)
	}
	root, err := n.keyOfURL("/")
	if err != nil {
		return "", fmt.Errorf("key of the origin's root: %w", err)
	}
	host := strings.TrimSuffix(root, "/") // the origin's host as keys show it
	bad := func(why string) error {
		return badObject{fmt.Sprintf("key %q: unknown key format (%s): want a path such as /live/match-1, a URL such as http://%s/live/match-1, or a key as /api/v1/hot shows it, such as %s/live/match-1", s, why, host, host)}
	}
	if len(s) > cluster.MaxObjectKeyBytes {
		return "", badObject{fmt.Sprintf("key of %d bytes: at most %d", len(s), cluster.MaxObjectKeyBytes)}
	}
	target := s
	switch {
	case strings.HasPrefix(s, "//"):
		return "", bad("no scheme")
	case strings.HasPrefix(s, "/"):
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", bad("not an http(s) URL with a host")
		}
		target = u.RequestURI()
	case strings.HasPrefix(s, host+"/"):
		target = s[len(host):]
	default:
		return "", bad("neither a path, a URL nor a key of origin " + host)
	}
	if strings.ContainsAny(target, "#") {
		return "", bad("a fragment is never part of a key")
	}
	key, err := n.keyOfURL(target)
	if err != nil {
		return "", bad(err.Error())
	}
	return key, nil
}

// objectAnswer is what PUT and DELETE /api/v1/objects answer.
type objectAnswer struct {
	cluster.ObjectSetting
	Cleared bool `json:"cleared,omitempty"` // nothing is pinned or capped any more
}

// handlePutObject changes a key's setting. The body gives the fields to
// change; null clears a pin or cap, a pin of 0 is no pin, and the reason is
// kept unless given:
//
//	{"key": "/live/match-1", "pin": 2, "cap": 4, "reason": "kick-off at 20:00"}
func (n *Node) handlePutObject(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, maxObjectBody)
	if err != nil {
		return
	}
	p, err := decodeObjectPatch(body)
	if err == nil {
		err = errors.Join(n.checkReplicas("pin", p.pin), n.checkReplicas("cap", p.cap))
	}
	var key string
	if err == nil {
		key, err = n.objectKey(p.key)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": strings.ReplaceAll(err.Error(), "\n", "; ")})
		return
	}
	set, err := n.ap.objects.store.Update(r.Context(), key, func(s *cluster.ObjectSetting) error {
		now := n.cfg.Now()
		if !s.Until.IsZero() && !now.Before(s.Until) {
			*s = cluster.ObjectSetting{} // lapsed; etcd is about to delete it
		}
		if p.lasts != nil {
			s.Until = time.Time{}
			if p.lasts.set {
				s.Until = now.Add(p.lasts.v).UTC()
			}
		}
		if p.pin != nil {
			s.Pin = p.pin.v // null: 0, no pin
		}
		setPtr(&s.Cap, p.cap)
		if s.Cap != nil && s.Pin > *s.Cap {
			return badObject{fmt.Sprintf("pin %d is above cap %d: a cap below the pin would win", s.Pin, *s.Cap)}
		}
		if p.reason != nil {
			s.Reason = *p.reason // kept unless given: a cap set later keeps the pin's why
		}
		s.By, s.Updated = "operator", n.cfg.Now().UTC()
		return nil
	})
	n.answerObject(w, key, set, err)
}

// handleDeleteObject clears a key's pin and cap: DELETE /api/v1/objects?key=K.
func (n *Node) handleDeleteObject(w http.ResponseWriter, r *http.Request) {
	key, err := n.objectKey(r.URL.Query().Get("key"))
	if r.URL.Query().Get("key") == "" {
		err = badObject{"query: key is required: DELETE /api/v1/objects?key=/live/match-1"}
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	_, err = n.ap.objects.store.Update(r.Context(), key, func(s *cluster.ObjectSetting) error {
		s.Pin, s.Cap = 0, nil
		return nil
	})
	n.answerObject(w, key, cluster.ObjectSetting{Key: key, Hash: httpcache.KeyHash(key)}, err)
}

func (n *Node) answerObject(w http.ResponseWriter, key string, set cluster.ObjectSetting, err error) {
	var bad badObject
	switch {
	case errors.As(err, &bad):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": bad.msg})
	case errors.Is(err, cluster.ErrObjectUntil):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "for: " + err.Error()})
	case errors.Is(err, cluster.ErrObjectsFull):
		n.ap.objects.refused.Inc()
		writeJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf(
			"the cluster holds its most object settings (--max-object-settings %d): clear one first (crowdpilot replicas clear KEY)", n.cfg.MaxObjectSettings)})
	case err != nil:
		n.cfg.Logger.Warn("object setting update failed", "key", key, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "etcd: " + err.Error()})
	default:
		capText := "none"
		if set.Cap != nil {
			capText = strconv.Itoa(*set.Cap)
		}
		n.cfg.Logger.Info("object setting changed by operator", "key", key, "pin", set.Pin, "cap", capText, "reason", set.Reason)
		writeJSON(w, http.StatusOK, objectAnswer{ObjectSetting: set, Cleared: set.IsZero()})
	}
}

// readBody reads a bounded request body, answering 413 or 400 itself on
// failure.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		return buf.Bytes(), nil
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body over %d bytes", limit)})
	} else {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read body: " + err.Error()})
	}
	return nil, err
}
