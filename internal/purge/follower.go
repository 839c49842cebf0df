package purge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/backoff"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// Applier applies purges to a node's cache. It is declared here, by its
// consumer; internal/node implements it. A Follower calls it from one
// goroutine, strictly in revision order.
type Applier interface {
	// ApplyPurge applies one entry. It must not block for long: the next
	// purge waits for it.
	ApplyPurge(e Entry)
	// Flush drops the whole cache. It is called when the follower's position
	// in the log was compacted away, so purges may have been missed.
	Flush()
}

// DefaultMaxDisconnect is FollowerConfig.MaxDisconnect when zero.
const DefaultMaxDisconnect = 10 * time.Second

// A follower asks etcd to confirm its position four times per MaxDisconnect,
// but no more often than minProgressInterval and no less often than
// maxProgressInterval.
const (
	minProgressInterval = 10 * time.Millisecond
	maxProgressInterval = time.Second
)

// FollowerConfig configures a Follower. Zero fields take the documented
// defaults; NewFollower validates it.
type FollowerConfig struct {
	// Client reaches etcd. Required.
	Client *cluster.Client
	// Cluster names the cluster whose log is followed. Required.
	Cluster string
	// Applier receives the purges. Required.
	Applier Applier
	// StartRev is the last revision already applied (a previous
	// Follower.Applied). The follower applies every purge after it. Zero
	// means "from now": no past purge is applied, which is right only for a
	// cache that is empty (or was just flushed). Negative is an error.
	StartRev int64
	// OnApplied, if not nil, is called (from the Run goroutine) after a
	// batch of purges was applied, after a flush, and at start when StartRev
	// is zero, with the revision up to which every purge has been applied;
	// the node publishes it as PurgeRev in its member record. Positions
	// confirmed by etcd progress alone (no purge) advance Applied but are
	// not reported, so an idle cluster sees no member-record writes.
	OnApplied func(rev int64)
	// MaxDisconnect is how long the follower may go without etcd confirming
	// its position before Connected reports false. Zero means
	// DefaultMaxDisconnect.
	MaxDisconnect time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives warnings about the log; nil discards them.
	Logger *slog.Logger
	// Records opens the entries (see NewLog): an entry that does not open
	// was not written by the cluster and is skipped, counted and logged by
	// Records; one that opens but cannot be read purges everything. Nil
	// means entries are not checked.
	Records *cluster.Records
	// Registerer receives the follower's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// validate fills defaults into c and checks it.
func (c *FollowerConfig) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("purge follower: Client is required")
	case c.Cluster == "":
		return errors.New("purge follower: Cluster is required")
	case c.Applier == nil:
		return errors.New("purge follower: Applier is required")
	case c.StartRev < 0:
		return fmt.Errorf("purge follower: negative StartRev %d", c.StartRev)
	case c.MaxDisconnect < 0:
		return fmt.Errorf("purge follower: negative MaxDisconnect %s", c.MaxDisconnect)
	}
	if c.MaxDisconnect == 0 {
		c.MaxDisconnect = DefaultMaxDisconnect
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Follower applies a cluster's purge log to one node, in order, never
// skipping an entry.
//
// It watches the log from the revision after the last one applied. etcd
// delivers the watched history in revision order, including entries whose
// keys Log.Compact has since deleted, so a follower that was away for a while
// gets exactly the purges it missed. If etcd has compacted its history past
// that position, the follower flushes the cache and continues from the
// current revision.
type Follower struct {
	cfg      FollowerConfig
	log      *cluster.PurgeReader // on a gRPC stream of this follower's own
	interval time.Duration        // between progress requests
	m        *metrics

	applied atomic.Int64 // every purge with Rev <= applied has been applied
	contact atomic.Int64 // Unix ns (cfg.Now) when etcd last confirmed applied was current; 0 = never
	running atomic.Bool  // guards against concurrent Run calls
	started bool         // position initialised; owned by Run
}

// NewFollower validates cfg and returns a follower; Run starts it.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("purge follower: %w", err)
	}
	f := &Follower{
		cfg:      cfg,
		log:      cluster.NewPurgeLog(cfg.Client, cfg.Cluster, cfg.Records).Reader(),
		interval: min(maxProgressInterval, max(minProgressInterval, cfg.MaxDisconnect/4)),
		m:        m,
		started:  cfg.StartRev > 0,
	}
	f.applied.Store(cfg.StartRev)
	if err := m.registerGauges(cfg.Registerer, f); err != nil {
		return nil, fmt.Errorf("purge follower: %w", err)
	}
	return f, nil
}

// Applied returns the revision up to which every purge has been applied.
func (f *Follower) Applied() int64 { return f.applied.Load() }

// Connected reports whether etcd confirmed the follower's position within the
// last MaxDisconnect. When it is false a purge may be committed that this
// node has not seen, so the node should serve cached entries only as stale.
// It is false until the follower first reaches etcd.
func (f *Follower) Connected() bool {
	last := f.contact.Load()
	return last != 0 && f.cfg.Now().Sub(time.Unix(0, last)) <= f.cfg.MaxDisconnect
}

// LastContact is when etcd last confirmed the follower's position (zero
// before the first contact). Entries cached before it were current then.
func (f *Follower) LastContact() time.Time {
	if last := f.contact.Load(); last != 0 {
		return time.Unix(0, last)
	}
	return time.Time{}
}

// Run follows the log until ctx is done, then returns nil. Watch failures and
// unreachable etcd are retried with backoff, always resuming after the last
// applied revision. Run must not be called concurrently with itself; called
// again after it returned, it resumes where it stopped.
func (f *Follower) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("purge follower: Run is already running")
	}
	defer f.running.Store(false)

	// Every call goes on the reader's own gRPC stream (progress requests
	// then concern only this watch) and requires an etcd leader, so an etcd
	// member cut off from its cluster cannot keep confirming a stale
	// position.
	bo := backoff.Backoff{Base: 50 * time.Millisecond, Max: 2 * time.Second}
	for {
		var err error
		if !f.started {
			err = f.startFromNow(ctx)
		} else {
			err = f.follow(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			bo.Reset()
			continue
		}
		d := bo.Next()
		f.cfg.Logger.Warn("purge log: following failed; retrying", "err", err, "applied", f.Applied(), "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
}

// startFromNow takes the current revision as the starting position.
func (f *Follower) startFromNow(ctx context.Context) error {
	t := f.cfg.Now()
	rev, err := f.currentRev(ctx)
	if err != nil {
		return err
	}
	f.applied.Store(rev)
	f.touch(t)
	f.started = true
	if f.cfg.OnApplied != nil {
		f.cfg.OnApplied(rev)
	}
	return nil
}

// currentRev reads etcd's current revision with a linearizable read.
func (f *Follower) currentRev(ctx context.Context) (int64, error) { return f.log.Revision(ctx) }

// follow watches the log from the revision after Applied until the watch
// ends. It returns nil when the caller should simply watch again (after a
// compaction was handled) and an error otherwise.
func (f *Follower) follow(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Read the current revision first: it proves contact, and a position
	// beyond it means etcd lost its data (restored or recreated), so purges
	// at revisions we think we have seen may be new ones.
	t := f.cfg.Now()
	cur, err := f.currentRev(ctx)
	if err != nil {
		return err
	}
	if applied := f.applied.Load(); applied > cur {
		f.cfg.Applier.Flush()
		f.m.flushes.Inc()
		f.applied.Store(cur)
		f.cfg.Logger.Warn("purge log: etcd revision went backwards; flushed the cache", "applied", applied, "etcd_rev", cur)
		if f.cfg.OnApplied != nil {
			f.cfg.OnApplied(cur)
		}
	}
	if f.applied.Load() == cur {
		f.touch(t)
	}
	from := f.applied.Load() + 1
	// Watch blocks until the gRPC stream is up; Connected goes false by
	// itself meanwhile.
	w := f.log.Watch(wctx, from)
	wg.Go(func() { f.probe(wctx) })
	for resp := range w.Changes() {
		if resp.CompactRevision != 0 {
			return f.recoverCompaction(ctx, resp.CompactRevision)
		}
		if err := resp.Err; err != nil {
			return fmt.Errorf("watch %s from rev %d: %w", LogPrefix(f.cfg.Cluster), from, err)
		}
		if resp.Progress {
			f.advance(resp.Revision)
			f.touch(f.cfg.Now())
			continue
		}
		f.apply(resp.Events)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch %s from rev %d: channel closed", LogPrefix(f.cfg.Cluster), from)
}

// apply applies the purges among events, all from one watch response.
func (f *Follower) apply(events []cluster.PurgeEvent) {
	base := f.applied.Load() // events at or below were applied before
	last := base
	purged := false
	for _, ev := range events {
		rev := ev.Rev
		if rev <= base {
			continue
		}
		last = max(last, rev)
		if ev.Deleted {
			continue // Log.Compact deleting old keys
		}
		raw, ok := ev.Open()
		if !ok {
			continue // not the cluster's: ignored (counted and logged by Open)
		}
		e, err := decodeEntry(rev, raw)
		if err != nil {
			// Never skip a purge: one we cannot read purges everything.
			f.cfg.Logger.Error("purge log: unreadable entry; purging everything instead", "key", ev.Key, "err", err)
			e = Entry{Rev: rev, Kind: KindAll}
		}
		f.cfg.Applier.ApplyPurge(e)
		f.m.applied[e.Kind].Inc()
		if !e.At.IsZero() {
			f.m.lag.Observe(max(0, f.cfg.Now().Sub(e.At).Seconds()))
		}
		purged = true
	}
	f.applied.Store(last)
	if purged && f.cfg.OnApplied != nil {
		f.cfg.OnApplied(last)
	}
}

// advance moves Applied forward to rev, which etcd confirmed as delivered.
func (f *Follower) advance(rev int64) {
	for {
		cur := f.applied.Load()
		if rev <= cur || f.applied.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// touch records that at t the follower was known to be current.
func (f *Follower) touch(t time.Time) {
	ns := t.UnixNano()
	for {
		cur := f.contact.Load()
		if ns <= cur || f.contact.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// recoverCompaction handles a watch whose start revision etcd has compacted:
// purges may be lost, so the cache is flushed and following continues from
// the current revision. The revision is read before flushing, so every purge
// up to it is covered by the flush and every later one is watched.
func (f *Follower) recoverCompaction(ctx context.Context, compactRev int64) error {
	t := f.cfg.Now()
	rev, err := f.currentRev(ctx)
	if err != nil {
		return fmt.Errorf("recover from compaction at rev %d: %w", compactRev, err)
	}
	from := f.applied.Load()
	f.cfg.Applier.Flush()
	f.m.flushes.Inc()
	f.advance(rev)
	f.touch(t)
	f.cfg.Logger.Warn("purge log: position compacted away; flushed the cache", "applied", from, "compacted_to", compactRev, "resume_after", rev)
	if f.cfg.OnApplied != nil {
		f.cfg.OnApplied(f.applied.Load())
	}
	return nil
}

// probe keeps the contact time fresh while the watch is open: it asks etcd
// for a progress notification every interval, and when none has come it
// checks with a linearizable read whether etcd's revision is still one we
// have applied (etcd sends no progress to a watch that starts past its
// current revision, which is the case in an idle cluster).
func (f *Follower) probe(ctx context.Context) {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, f.interval)
		_ = f.log.RequestProgress(rctx) // an answer arrives on the watch, or not
		cancel()
		start := f.cfg.Now()
		if start.Sub(time.Unix(0, f.contact.Load())) < 2*f.interval {
			continue
		}
		rctx, cancel = context.WithTimeout(ctx, f.interval)
		rev, err := f.currentRev(rctx)
		cancel()
		if err == nil && rev <= f.applied.Load() {
			f.touch(start)
		}
	}
}
