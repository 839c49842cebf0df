// Package heat finds a node's hot keys: a bounded top-k of exponentially
// decayed request rates.
//
// # Algorithm
//
// The Tracker is a decayed Space-Saving sketch, split into shards by key
// hash, each tracking at most Capacity/Shards keys. A tracked key costs one
// atomic add on its own counter. An untracked key fills a free slot, or, in
// a full shard, replaces the key with the lowest decayed score and inherits
// that score (the Space-Saving rule: any key whose rate exceeds
// 1/(Capacity/Shards) of its shard's total keeps its slot). The inherited
// score decays like a rate and only ranks keys for eviction; reported rates
// count a key's own requests, so a one-off key is never reported as hot.
//
// A full shard admits a new key only with probability 1/(c+1), c being the
// lowest decayed count (score × Window) in the shard: randomized admission
// ("RAP", Ben Basat et al., INFOCOM 2017). A long tail of rare keys then
// neither evicts the warm keys nor allocates, and costs about what a
// tracked key does, since the coin is flipped before taking the lock; a key
// with a real crowd gets in after about c+1 requests, milliseconds. Memory
// is fixed at New however many distinct keys arrive. Shards split keys by
// hash, so one can fill before the tracker does: size Capacity at a few
// times the number of keys expected to be warm at once.
//
// Why Space-Saving and not HeavyKeeper: a top-k of rates needs a record per
// reported key (its text and decayed rate) anyway, and Space-Saving keeps
// exactly those records and nothing more, with deterministic bounds.
// HeavyKeeper adds count arrays and a top-k min-heap that must be updated,
// under a lock, on every request for a hot key: the wrong cost for the
// serving path. Its strength, resisting churn from rare keys, randomized
// admission provides here.
//
// # Rates and time
//
// Observe never reads the clock. Requests accumulate in a per-key pending
// counter, and a fold turns them into an exponentially weighted moving
// average of the interval rates with time constant Window:
//
//	rate = rate·e^(−dt/Window) + (n/dt)·(1 − e^(−dt/Window))
//
// The estimate is unbiased for a steady rate whatever the fold interval dt,
// shows 63% of a step after one Window and 95% after three, and decays
// toward 0 when a key stops. Folds happen in Tick(now), which the owner
// calls periodically (every 10–100ms; at most Window/10 apart keeps
// eviction ranking fresh, which only a full shard needs: see Tick), and in
// Top and Rate, which fold as of Config.Now.
// Tick's now should come from that same clock.
//
// # Concurrency
//
// Observe may be called from any number of goroutines. It takes no lock and
// allocates nothing for a tracked key; keys of different shards never share
// a lock or a counter. Top, Rate, Tick and Stats are safe to call
// concurrently with Observe and with each other.
package heat

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultCapacity = 1024
	DefaultWindow   = time.Second
	// maxDefaultShards caps the default shard count; more shards than cores
	// buy nothing once contention is gone.
	maxDefaultShards = 64
	// defaultKeysPerShard sizes the default shard count: small shards keep
	// the eviction scan short, large ones keep the top-k accurate.
	defaultKeysPerShard = 16
	maxShards           = 1 << 16
)

// Config configures a Tracker. Zero fields mean the documented defaults.
type Config struct {
	// Capacity is the most keys tracked at once, over all shards.
	// Zero means DefaultCapacity (1024).
	Capacity int

	// Window is the time constant of the rate decay: a step in a key's rate
	// shows 63% after one Window, 95% after three, and a key that stops
	// falls to 37% of its rate per Window. Zero means DefaultWindow (1s).
	Window time.Duration

	// Shards is the number of independently locked parts, rounded up to a
	// power of two and capped at Capacity. Each shard tracks
	// Capacity/Shards keys. Zero means Capacity/16 rounded down to a power
	// of two, between 1 and 64.
	Shards int

	// Now reads the clock when Top and Rate fold pending observations.
	// Nil means time.Now.
	Now func() time.Time
}

// KeyRate is one tracked key and its decayed rate.
type KeyRate struct {
	Key  string
	Hash uint64
	// Rate is the key's decayed request rate in requests per second,
	// counting only its own requests since it was admitted: a key admitted
	// recently reads like a step up from zero. It never includes the rate
	// a key inherits on admission, which serves only to rank keys for
	// eviction, so a burst of one-off keys is never reported as hot.
	Rate float64
	// Count is the number of observations since the key was last admitted.
	Count uint64
	// Recent is the key's rate over the interval between two reports,
	// without the decay's lag (see Recent); 0 when unknown.
	Recent float64
}

// Stats counts what a Tracker holds and what it has shed.
type Stats struct {
	Tracked   int    // keys tracked now, at most Capacity
	Capacity  int    // the bound on Tracked
	Evictions uint64 // keys that lost their slot to a new key
	Rejected  uint64 // observations of untracked keys that a full shard did not admit
}

// A Tracker keeps the decayed request rates of the hottest keys seen.
type Tracker struct {
	shards   []shard
	shift    uint    // hash >> shift selects the shard
	tau      float64 // Window in seconds
	capacity int     // sum of the shards' capacities
	now      func() time.Time
}

// shard is one independently locked Space-Saving table.
type shard struct {
	// mu guards entries, last, evictions and won, all writes to table and
	// odds, and the rate, inherited and count of every entry.
	mu sync.Mutex

	// table indexes entries by hash with linear probing. It is written
	// under mu and read without it by Observe; it has at least twice as
	// many slots as entries, so probes are short and always meet an
	// empty slot.
	table []atomic.Pointer[entry]
	mask  uint64

	entries   []*entry // the tracked keys, at most cap
	cap       int
	last      time.Time // when pending counts were last folded
	evictions uint64
	won       uint64 // admission coin flips won

	// odds holds the float64 bits of c+1, where c is a lower bound on the
	// lowest decayed count in the shard, once the shard is full, and 0
	// while it has free slots: a new key is admitted with probability
	// 1/(c+1). Written under mu, read by Observe without it, so a rejected
	// key costs no lock.
	odds  atomic.Uint64
	flips atomic.Uint64 // admission coin flips; numbers the coin's sequence

	_ [64]byte // keeps neighbouring shards' locks off one cache line
}

// entry is one tracked key. hash and key never change after it is
// published in a table, so Observe may read them without a lock.
type entry struct {
	pending atomic.Uint64 // observations since the last fold
	hash    uint64
	key     string
	// The fields below are guarded by shard.mu.
	rate      float64 // own decayed rate as of the shard's last fold
	inherited float64 // decayed rate inherited from the evicted key, for ranking only
	count     uint64  // folded observations
	_         [8]byte // rounds entry up to a 64-byte cache line of its own
}

// New returns a Tracker for cfg, or an error if cfg is invalid.
func New(cfg Config) (*Tracker, error) {
	if cfg.Capacity < 0 {
		return nil, fmt.Errorf("heat: capacity %d < 0", cfg.Capacity)
	}
	if cfg.Window < 0 {
		return nil, fmt.Errorf("heat: window %v < 0", cfg.Window)
	}
	if cfg.Shards < 0 || cfg.Shards > maxShards {
		return nil, fmt.Errorf("heat: shards %d not in [0, %d]", cfg.Shards, maxShards)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	shards := cfg.Shards
	if shards == 0 {
		shards = min(max(cfg.Capacity/defaultKeysPerShard, 1), maxDefaultShards)
		shards = 1 << (bits.Len(uint(shards)) - 1) // round down
	} else {
		shards = 1 << bits.Len(uint(shards-1)) // round up
		for shards > cfg.Capacity {
			shards >>= 1
		}
	}
	t := &Tracker{
		shards: make([]shard, shards),
		shift:  uint(64 - bits.Len(uint(shards-1))),
		tau:    cfg.Window.Seconds(),
		now:    cfg.Now,
	}
	per := cfg.Capacity / shards
	slots := 1 << bits.Len(uint(2*per-1)) // power of two >= 2*per
	start := cfg.Now()
	for i := range t.shards {
		s := &t.shards[i]
		s.table = make([]atomic.Pointer[entry], slots)
		s.mask = uint64(slots - 1)
		s.entries = make([]*entry, 0, per)
		s.cap = per
		s.last = start
	}
	t.capacity = per * shards
	return t, nil
}

// Observe counts one request for key, whose 64-bit hash the caller has
// computed (routing's xxhash of the cache key). Keys with equal hashes are
// counted as one key. For a tracked key Observe takes no lock and allocates
// nothing. An untracked key in a full shard is mostly turned away by the
// admission coin, also without a lock; an admitted one locks its shard and
// copies key.
func (t *Tracker) Observe(hash uint64, key string) {
	s := &t.shards[hash>>t.shift]
	tab, m := s.table, s.mask
	i := hash & m
	for range len(tab) {
		e := tab[i].Load()
		if e == nil {
			break
		}
		if e.hash == hash {
			e.pending.Add(1)
			return
		}
		i = (i + 1) & m
	}
	won := false
	if odds := s.odds.Load(); odds != 0 {
		if coin(hash, s.flips.Add(1))*math.Float64frombits(odds) >= 1 {
			return
		}
		won = true
	}
	s.admit(hash, key, t.tau, won)
}

// Tick folds the observations counted since the last fold into the decayed
// rates as of now. The owner calls it periodically, ideally at most Window/10
// apart; a now earlier than the last fold is ignored.
//
// It reports whether any shard is full. Only a full shard needs that pace:
// its admission odds and evictions rank keys by their decayed rates. A
// tracker with room everywhere admits every new key, and Top and Rate fold
// before they read, so its owner may tick it as seldom as it reads it.
func (t *Tracker) Tick(now time.Time) (full bool) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.fold(now, t.tau)
		full = full || (s.cap > 0 && len(s.entries) == s.cap)
		s.mu.Unlock()
	}
	return full
}

// Top returns up to n tracked keys, highest rate first (ties by hash), with
// rates as of Config.Now. It returns nil if n <= 0.
func (t *Tracker) Top(n int) []KeyRate {
	if n <= 0 {
		return nil
	}
	now := t.now()
	out := make([]KeyRate, 0, t.capacity)
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.fold(now, t.tau)
		for _, e := range s.entries {
			out = append(out, KeyRate{Key: e.key, Hash: e.hash, Rate: e.rate, Count: e.count + e.pending.Load()})
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b KeyRate) int {
		switch {
		case a.Rate > b.Rate:
			return -1
		case a.Rate < b.Rate:
			return 1
		case a.Hash < b.Hash:
			return -1
		case a.Hash > b.Hash:
			return 1
		}
		return 0
	})
	if len(out) > n {
		out = slices.Clip(out[:n])
	}
	return out
}

// Rate returns the decayed rate of the key with this hash as of Config.Now,
// or 0 if the key is not tracked.
func (t *Tracker) Rate(hash uint64) float64 {
	s := &t.shards[hash>>t.shift]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fold(t.now(), t.tau)
	if e := s.lookup(hash); e != nil {
		return e.rate
	}
	return 0
}

// Stats reports how many keys are tracked and how many were evicted.
func (t *Tracker) Stats() Stats {
	st := Stats{Capacity: t.capacity}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Tracked += len(s.entries)
		st.Evictions += s.evictions
		st.Rejected += s.flips.Load() - s.won
		s.mu.Unlock()
	}
	return st
}

// admit counts an observation of a key that Observe did not find: it may
// have been admitted meanwhile, or it takes a free slot, or, if it won the
// admission coin flip (won) or wins one now, the slot of the key with the
// lowest decayed count.
func (s *shard) admit(hash uint64, key string, tau float64, won bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if won {
		s.won++
	}
	if e := s.lookup(hash); e != nil {
		e.pending.Add(1)
		return
	}
	if s.cap == 0 {
		return
	}
	if len(s.entries) < s.cap {
		e := &entry{hash: hash, key: strings.Clone(key)}
		e.pending.Store(1)
		s.entries = append(s.entries, e)
		s.insert(e)
		if len(s.entries) == s.cap {
			s.setOdds(s.lowest(tau), tau)
		}
		return
	}
	if !won {
		// The shard filled up after Observe looked: flip here.
		odds := math.Float64frombits(s.odds.Load())
		if coin(hash, s.flips.Add(1))*odds >= 1 {
			return
		}
		s.won++
	}
	j, low := 0, math.Inf(1)
	for i, old := range s.entries {
		if sc := old.score(tau); sc < low {
			j, low = i, sc
		}
	}
	s.remove(s.entries[j])
	s.evictions++
	e := &entry{hash: hash, key: strings.Clone(key), inherited: low}
	e.pending.Store(1)
	s.entries[j] = e
	s.insert(e)
	s.setOdds(low, tau) // every score is still >= low
}

// lowest returns the lowest entry score. s.mu must be held.
func (s *shard) lowest(tau float64) float64 {
	low := math.Inf(1)
	for _, e := range s.entries {
		low = min(low, e.score(tau))
	}
	return low
}

// setOdds sets the admission odds from a lower bound on the lowest score, a
// rate: the count it stands for is low·Window. s.mu must be held.
func (s *shard) setOdds(low, tau float64) {
	s.odds.Store(math.Float64bits(low*tau + 1))
}

// coin returns a uniform number in [0, 1) from a key hash and a flip's
// sequence number: repeatable runs, no shared generator state.
func coin(hash, n uint64) float64 {
	z := hash ^ n*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) * 0x1p-53
}

// score ranks e for eviction: its rate, plus the rate it inherited, plus
// observations not yet folded (between folds each adds about 1/Window).
func (e *entry) score(tau float64) float64 {
	return e.rate + e.inherited + float64(e.pending.Load())/tau
}

// fold turns the pending counts into rates as of now. s.mu must be held.
func (s *shard) fold(now time.Time, tau float64) {
	dt := now.Sub(s.last).Seconds()
	if dt <= 0 {
		return
	}
	s.last = now
	keep := math.Exp(-dt / tau)
	gain := -math.Expm1(-dt/tau) / dt // (1-keep)/dt, precise for small dt
	low := math.Inf(1)
	for _, e := range s.entries {
		n := e.pending.Swap(0)
		e.count += n
		e.rate = e.rate*keep + float64(n)*gain
		e.inherited *= keep
		low = min(low, e.rate+e.inherited)
	}
	if len(s.entries) == s.cap && s.cap > 0 {
		s.setOdds(low, tau)
	}
}

// lookup finds hash in the table. s.mu must be held.
func (s *shard) lookup(hash uint64) *entry {
	for i := hash & s.mask; ; i = (i + 1) & s.mask {
		e := s.table[i].Load()
		if e == nil || e.hash == hash {
			return e
		}
	}
}

// insert adds e, whose hash is not in the table. s.mu must be held.
func (s *shard) insert(e *entry) {
	i := e.hash & s.mask
	for s.table[i].Load() != nil {
		i = (i + 1) & s.mask
	}
	s.table[i].Store(e)
}

// remove deletes e from the table by backward-shift deletion, so no
// tombstones accumulate. Observe may miss an entry while it moves; it then
// takes the locked path, which finds it. s.mu must be held.
func (s *shard) remove(e *entry) {
	m := s.mask
	i := e.hash & m
	for s.table[i].Load() != e {
		i = (i + 1) & m
	}
	for j := (i + 1) & m; ; j = (j + 1) & m {
		p := s.table[j].Load()
		if p == nil {
			break
		}
		// p stays if its home slot lies cyclically in (i, j].
		home := p.hash & m
		if (j-home)&m < (j-i)&m {
			continue
		}
		s.table[i].Store(p)
		i = j
	}
	s.table[i].Store(nil)
}
