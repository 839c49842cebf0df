package route

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
)

// Config configures a Router. Zero fields mean the documented defaults.
type Config struct {
	// Self is this node's ID. Required.
	Self string
	// Zone is this node's zone; picking prefers replicas in the same zone.
	Zone string
	// Suspicion is how long a suspected peer is skipped before it is tried
	// again. Default 2s.
	Suspicion time.Duration
	// EjectAfter is how many consecutive failed forwards make a peer
	// suspected (a refused connection does at once). Default 3.
	EjectAfter int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// PeerLimit bounds the forwards in flight to one peer with an adaptive
	// concurrency limit (failsafe-go's: it shrinks when the peer's latency
	// rises), so a drowning peer is offered less work within milliseconds
	// instead of a queue; see Admit. Zero fields mean the defaults.
	PeerLimit PeerLimit
	// SetMemory is how long a tenant's node set is remembered once a
	// change replaced it, so that a key's new owner can find the node that
	// held it (PastOwnersFor). Default 5m.
	SetMemory time.Duration
}

// PeerLimit configures the adaptive limit on forwards to each peer.
type PeerLimit struct {
	// Min, Initial and Max bound the limit. Defaults 16, 64 and 512.
	Min, Initial, Max uint
	// MaxWait is how long a forward may wait for room when the limit is
	// full before it is refused (ErrPeerBusy). Default 100ms.
	MaxWait time.Duration
}

// ErrPeerBusy is what Admit refuses with: the peer's limit was full for
// MaxWait. Nothing was sent; the peer is not to blame for it.
var ErrPeerBusy = errors.New("peer at its concurrency limit")

// Router answers "who serves this key" from immutable snapshots. Reads never
// lock; SetPeers and SetReplicas build a new snapshot and swap it in.
type Router struct {
	cfg Config
	tab atomic.Pointer[table]

	mu      sync.Mutex       // guards state and tenants; held only while building snapshots
	state   map[string]*peer // per-peer health, kept across membership changes
	tenants []TenantSpec     // as last given to SetTenants
}

// table is one immutable routing snapshot.
type table struct {
	peers    []*peer               // live peers, sorted by ID
	replicas map[uint64][]*peer    // key hash -> leased replica holders (owner excluded)
	tenants  map[string]*tenantSet // tenant -> its node set; nil without tenants
	past     map[string][]pastSet  // tenant -> its recent past sets, most recent first; nil when none
}

// peer is a Peer plus the mutable health routing keeps about it (and its
// Labels parsed, read-only).
type peer struct {
	Peer
	seed      uint64
	labels    map[string]string
	inflight  atomic.Int64 // forwards under way to this peer
	downUntil atomic.Int64 // unix nanos before which the peer is skipped
	fails     atomic.Int32 // consecutive failed forwards
	latency   atomic.Int64 // EWMA of forward latency, nanoseconds
	limit     adaptivelimiter.AdaptiveLimiter[any]
}

// NewRouter returns a Router that knows only itself until SetPeers is called.
func NewRouter(cfg Config) *Router {
	if cfg.Suspicion <= 0 {
		cfg.Suspicion = 2 * time.Second
	}
	if cfg.SetMemory <= 0 {
		cfg.SetMemory = 5 * time.Minute
	}
	if cfg.EjectAfter <= 0 {
		cfg.EjectAfter = 3
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pl := &cfg.PeerLimit
	if pl.Min == 0 {
		pl.Min = 16
	}
	if pl.Max == 0 {
		pl.Max = 512
	}
	if pl.Initial == 0 {
		pl.Initial = min(max(64, pl.Min), pl.Max)
	}
	pl.Min = min(pl.Min, pl.Initial)
	pl.Max = max(pl.Max, pl.Initial)
	if pl.MaxWait <= 0 {
		pl.MaxWait = 100 * time.Millisecond
	}
	r := &Router{cfg: cfg, state: make(map[string]*peer)}
	r.tab.Store(&table{})
	return r
}

// Self is this node's ID.
func (r *Router) Self() string { return r.cfg.Self }

// SetPeers replaces the live peer list (this node included, normally).
func (r *Router) SetPeers(peers []Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.tab.Load()
	next := &table{peers: make([]*peer, 0, len(peers)), replicas: old.replicas}
	keep := make(map[string]*peer, len(peers))
	for _, p := range peers {
		st, ok := r.state[p.ID]
		if !ok || st.Peer != p {
			// A new address, zone, labels or drain state is a new peer:
			// fresh health (labels and drains change rarely).
			st = newPeer(p)
			st.limit = r.newLimit()
		}
		keep[p.ID] = st
		next.peers = append(next.peers, st)
	}
	slices.SortFunc(next.peers, func(a, b *peer) int { return strings.Compare(a.ID, b.ID) })
	r.state = keep
	next.replicas = r.resolveReplicas(old.rawReplicas(), keep)
	next.tenants = buildTenantSets(r.tenants, next.peers)
	next.past = pastSets(old, next.tenants, r.cfg.Now().UnixNano(), r.cfg.SetMemory)
	r.tab.Store(next)
}

// SetReplicas replaces the replica sets: key hash -> IDs of the nodes that
// hold a live lease for a copy. Unknown IDs are ignored until they join.
func (r *Router) SetReplicas(sets map[uint64][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.tab.Load()
	next := &table{peers: old.peers, tenants: old.tenants, past: old.past}
	next.replicas = r.resolveReplicas(sets, r.state)
	r.tab.Store(next)
}

func (r *Router) resolveReplicas(sets map[uint64][]string, byID map[string]*peer) map[uint64][]*peer {
	if len(sets) == 0 {
		return nil
	}
	out := make(map[uint64][]*peer, len(sets))
	for h, ids := range sets {
		ps := make([]*peer, 0, len(ids))
		for _, id := range ids {
			if p, ok := byID[id]; ok {
				ps = append(ps, p)
			}
		}
		if len(ps) > 0 {
			out[h] = ps
		}
	}
	return out
}

// rawReplicas turns resolved replica sets back into IDs, so SetPeers can
// re-resolve them against a new membership.
func (t *table) rawReplicas() map[uint64][]string {
	if len(t.replicas) == 0 {
		return nil
	}
	out := make(map[uint64][]string, len(t.replicas))
	for h, ps := range t.replicas {
		ids := make([]string, len(ps))
		for i, p := range ps {
			ids[i] = p.ID
		}
		out[h] = ids
	}
	return out
}

// Peers returns the live peers, sorted by ID.
func (r *Router) Peers() []Peer {
	t := r.tab.Load()
	out := make([]Peer, len(t.peers))
	for i, p := range t.peers {
		out[i] = p.Peer
	}
	return out
}

// Replicas returns the IDs holding leased replicas of the key hash.
func (r *Router) Replicas(hash uint64) []string {
	ps := r.tab.Load().replicas[hash]
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return ids
}

// InFlight is the number of forwards under way to the peer id.
func (r *Router) InFlight(id string) int64 {
	for _, p := range r.tab.Load().peers {
		if p.ID == id {
			return p.inflight.Load()
		}
	}
	return 0
}

// Suspected reports whether this router currently skips the peer id
// because forwards to it failed (see Begin).
func (r *Router) Suspected(id string) bool {
	now := r.cfg.Now().UnixNano()
	for _, p := range r.tab.Load().peers {
		if p.ID == id {
			return p.downUntil.Load() > now
		}
	}
	return false
}

// Owner is the peer with the highest rendezvous score for hash among peers
// not under suspicion (or among all peers if every one is suspected). ok is
// false when no peers are known.
func (r *Router) Owner(hash uint64) (Peer, bool) {
	t := r.tab.Load()
	return r.owner(t.peers, hash)
}

func (r *Router) owner(peers []*peer, hash uint64) (Peer, bool) {
	var buf [1]*peer
	got := rankAmong(peers, hash, buf[:0], r.cfg.Now().UnixNano())
	if len(got) == 0 {
		return Peer{}, false
	}
	return got[0].Peer, true
}

// rank appends to dst, in descending rendezvous score, up to cap(dst) peers
// for hash, skipping suspected peers unless all are suspected. It does not
// allocate when dst has room.
func (t *table) rank(hash uint64, dst []*peer, now int64) []*peer {
	return rankAmong(t.peers, hash, dst, now)
}

// rankAmong is rank over the given peers.
func rankAmong(peers []*peer, hash uint64, dst []*peer, now int64) []*peer {
	n := cap(dst)
	scores := [8]uint64{}
	if n > len(scores) {
		n = len(scores)
	}
	for pass := 0; pass < 2 && len(dst) == 0; pass++ {
		for _, p := range peers {
			if pass == 0 && p.downUntil.Load() > now {
				continue
			}
			s := score(p.seed, hash)
			// Insertion into the top-n, kept sorted by score descending.
			i := len(dst)
			if i == n {
				if s <= scores[n-1] {
					continue
				}
				i = n - 1
			} else {
				dst = append(dst, nil)
			}
			for i > 0 && scores[i-1] < s {
				scores[i] = scores[i-1]
				dst[i] = dst[i-1]
				i--
			}
			scores[i] = s
			dst[i] = p
		}
	}
	return dst
}

// Target is one place a request for a key may be served.
type Target struct {
	p *peer
}

// ID is the target node's ID.
func (t Target) ID() string { return t.p.ID }

// Addr is the target node's data address.
func (t Target) Addr() string { return t.p.Addr }

// Peer is the target's member record.
func (t Target) Peer() Peer { return t.p.Peer }

// Plan is the ordered list of places to try for one request.
type Plan struct {
	// Local is true when this node is in R(k) and should serve itself.
	Local bool
	// Targets are the members to forward to, best first: the chosen member
	// of R(k), the rest of R(k), then the next rendezvous candidate.
	Targets []Target
	// Owner is owner(k) among Targets, as ranked when the plan was made.
	Owner Target
	// Successor says the last target is the next rendezvous candidate, not
	// a member of R(k): where the key lands once the owner is gone. A
	// candidate that does not hold the key fetches it from the origin, so
	// it is asked only once the owner is suspected (see Begin).
	Successor bool
}

// Members returns the targets that are members of R(k): all but the
// successor.
func (p Plan) Members() []Target {
	if p.Successor {
		return p.Targets[:len(p.Targets)-1]
	}
	return p.Targets
}

// Plan decides where a request for hash goes. buf is reused storage for the
// targets so that the serving path does not allocate.
func (r *Router) Plan(hash uint64, buf []Target) Plan {
	t := r.tab.Load()
	return r.plan(t, t.peers, hash, buf)
}

// plan is Plan with owners ranked among peers (all live peers, or one
// tenant's node set).
func (r *Router) plan(t *table, peers []*peer, hash uint64, buf []Target) Plan {
	now := r.cfg.Now().UnixNano()
	var rankBuf [3]*peer
	ranked := rankAmong(peers, hash, rankBuf[:0], now)
	if len(ranked) == 0 {
		return Plan{Local: true}
	}
	owner := ranked[0]
	reps := t.replicas[hash]
	if owner.ID == r.cfg.Self {
		return Plan{Local: true}
	}
	for _, p := range reps {
		if p.ID == r.cfg.Self {
			return Plan{Local: true}
		}
	}
	plan := Plan{Targets: buf[:0], Owner: Target{owner}}
	if len(reps) > 0 {
		first := r.pick(owner, reps, now)
		plan.Targets = append(plan.Targets, Target{first})
		for _, p := range reps {
			if p != first && p.downUntil.Load() <= now {
				plan.Targets = append(plan.Targets, Target{p})
			}
		}
		if first != owner {
			plan.Targets = append(plan.Targets, Target{owner})
		}
	} else {
		plan.Targets = append(plan.Targets, Target{owner})
	}
	// The next rendezvous candidate is where the key lands if the owner is
	// gone; it may be this node, which then serves itself.
	for _, p := range ranked[1:] {
		if p.ID == r.cfg.Self {
			break
		}
		if !containsPeer(plan.Targets, p) {
			plan.Targets = append(plan.Targets, Target{p})
			plan.Successor = true
			break
		}
	}
	return plan
}

// pick chooses among owner ∪ reps by power-of-two-choices: two distinct
// random members, the one with fewer forwards in flight wins (then lower
// latency). Members in this node's zone are preferred when there are at
// least two of them.
func (r *Router) pick(owner *peer, reps []*peer, now int64) *peer {
	var all [16]*peer
	set := all[:0]
	add := func(p *peer) {
		if len(set) < len(all) && p.downUntil.Load() <= now {
			set = append(set, p)
		}
	}
	add(owner)
	for _, p := range reps {
		add(p)
	}
	if len(set) == 0 {
		return owner
	}
	if r.cfg.Zone != "" {
		local := 0
		for _, p := range set {
			if p.Zone == r.cfg.Zone {
				set[local] = p
				local++
			}
		}
		if local >= 2 {
			set = set[:local]
		} else {
			// Restore: the zone filter kept too few; rebuild the full set.
			set = all[:0]
			add(owner)
			for _, p := range reps {
				add(p)
			}
		}
	}
	if len(set) == 1 {
		return set[0]
	}
	i := rand.IntN(len(set))
	j := rand.IntN(len(set) - 1)
	if j >= i {
		j++
	}
	a, b := set[i], set[j]
	if better(b, a) {
		return b
	}
	return a
}

// better reports whether a is a better choice than b.
func better(a, b *peer) bool {
	ai, bi := a.inflight.Load(), b.inflight.Load()
	if ai != bi {
		return ai < bi
	}
	return a.latency.Load() < b.latency.Load()
}

func containsPeer(ts []Target, p *peer) bool {
	for _, t := range ts {
		if t.p == p {
			return true
		}
	}
	return false
}

func (r *Router) newLimit() adaptivelimiter.AdaptiveLimiter[any] {
	pl := r.cfg.PeerLimit
	return adaptivelimiter.NewBuilder[any]().
		WithLimits(pl.Min, pl.Max, pl.Initial).
		WithQueueing(2, 4).
		Build()
}

// Admit is Begin under the peer's adaptive concurrency limit: it waits at
// most PeerLimit.MaxWait (or until ctx ends) for room, and refuses with
// ErrPeerBusy when there is none, before anything is sent, so the caller
// tries the next member or serves what it holds. The returned func ends
// the forward as Begin's does.
func (r *Router) Admit(ctx context.Context, t Target) (func(err error) (ejected bool), error) {
	permit, err := t.p.limit.AcquirePermitWithMaxWait(ctx, r.cfg.PeerLimit.MaxWait)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ErrPeerBusy
	}
	done := r.Begin(t)
	return func(err error) bool {
		permit.Record() // a slow failure is a signal too: the limit shrinks with latency
		return done(err)
	}, nil
}

// EjectAfter is how many consecutive failures make a peer suspected.
func (r *Router) EjectAfter() int { return r.cfg.EjectAfter }

// Limit is the peer's current adaptive concurrency limit (0: unknown peer).
func (r *Router) Limit(id string) int {
	for _, p := range r.tab.Load().peers {
		if p.ID == id {
			return p.limit.Limit()
		}
	}
	return 0
}

// Begin records a forward starting to t; call the returned func with the
// forward's error (nil: it succeeded, or the client went away and the peer
// is not to blame) when it ends. The func reports whether this outcome put
// the peer under suspicion, so the caller can log the transition once.
//
// A peer is suspected (skipped for Suspicion) after EjectAfter consecutive
// failures, or at once when it refuses connections: nothing listens there.
// One timeout or reset alone does not eject it, since on a saturated
// machine one slow dial is common and ejecting the owner of a hot key sends
// its crowd to the origin (the outlier detection of Envoy and HAProxy's
// "fall" make the same trade).
func (r *Router) Begin(t Target) func(err error) (ejected bool) {
	t.p.inflight.Add(1)
	start := r.cfg.Now()
	return func(err error) bool {
		t.p.inflight.Add(-1)
		return r.outcome(t.p, start, err)
	}
}

// Observe records the outcome of an exchange with the peer id made outside
// Begin (a fill from the owner): a failure counts toward suspicion as a
// failed forward does, a success clears it. It reports whether this
// outcome put the peer under suspicion; an unknown id is ignored.
func (r *Router) Observe(id string, err error) (ejected bool) {
	for _, p := range r.tab.Load().peers {
		if p.ID == id {
			return r.outcome(p, time.Time{}, err)
		}
	}
	return false
}

// outcome applies one exchange's result to p; start is when it began (zero:
// not timed, the latency estimate is left alone).
func (r *Router) outcome(p *peer, start time.Time, err error) bool {
	now := r.cfg.Now()
	if err != nil {
		fails := p.fails.Add(1)
		if fails < int32(r.cfg.EjectAfter) && !errors.Is(err, syscall.ECONNREFUSED) {
			return false
		}
		was := p.downUntil.Swap(now.Add(r.cfg.Suspicion).UnixNano())
		return was <= now.UnixNano()
	}
	p.fails.Store(0)
	p.downUntil.Store(0)
	if start.IsZero() {
		return false
	}
	d := int64(now.Sub(start))
	old := p.latency.Load()
	// EWMA with weight 1/8: cheap, and old enough to ride out one spike.
	p.latency.Store(old + (d-old)/8)
	return false
}
