package autopilot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// Copier fills a key on a node from a peer. It is implemented by the node:
// Copy tells node to fetch key (a base cache key) from the member from (""
// means the key's owner), a peer fill and never the origin, and returns
// once the copy is stored there.
type Copier interface {
	Copy(ctx context.Context, node, key, from string) error
}

// CopierFunc adapts a function to Copier.
type CopierFunc func(ctx context.Context, node, key, from string) error

// Copy calls f.
func (f CopierFunc) Copy(ctx context.Context, node, key, from string) error {
	return f(ctx, node, key, from)
}

// ReplicaLeases is where the actuator keeps the replicas' leases and
// records; *cluster.ReplicaStore is one. Register revokes the lease when
// it fails (see cluster.ReplicaStore.Register); Renew and TimeToLive
// return an error wrapping cluster.ErrLeaseNotFound for a lease that is
// gone.
type ReplicaLeases interface {
	Key(hash uint64, node string) string
	Grant(ctx context.Context, ttl time.Duration) (cluster.Lease, error)
	Register(ctx context.Context, fence cluster.Fence, lease int64, rec Record) error
	Revoke(ctx context.Context, lease int64) error
	Renew(ctx context.Context, lease int64) (time.Duration, error)
	TimeToLive(ctx context.Context, lease int64) (time.Duration, error)
	List(ctx context.Context) ([]Record, error)
}

var _ ReplicaLeases = (*cluster.ReplicaStore)(nil)

// Errors the Actuator reports per action.
var (
	// ErrFenced: the fence failed, so this leader's term is over.
	ErrFenced = cluster.ErrFenced
	// ErrReplicaExists: a record for the replica is already registered.
	ErrReplicaExists = cluster.ErrReplicaExists
	// ErrShed: a scale-out was dropped because MaxCopies were in flight or
	// the renewal schedule was full.
	ErrShed = errors.New("autopilot: scale-out shed")
	// ErrPending: a scale-out outlasted ApplyWait; it goes on in the
	// background and its outcome is reported later (see Leader).
	ErrPending = errors.New("autopilot: scale-out still in progress")
	// ErrUnknownReplica: a Renew for a replica whose lease this actuator
	// does not hold. The replica expires unless it is adopted.
	ErrUnknownReplica = errors.New("autopilot: replica lease not held")
)

// Actuator bounds and defaults.
const (
	DefaultMaxCopies = 8
	DefaultApplyWait = time.Second
	DefaultMaxLeases = 4096
	// DefaultCopyTimeout is the longest a copy may take; it is also held
	// under half the TTL.
	DefaultCopyTimeout = 5 * time.Second

	// A renewal is asked for once less than renewFraction (25%) of the TTL
	// is left; it happens at a uniformly random point between then and
	// renewLatest of the TTL left, so renewals granted together do not
	// line up.
	renewLatest = 0.10
	// renewRetry is the pause before retrying a failed renewal.
	renewRetry = 250 * time.Millisecond
	// maxRenewsInFlight bounds concurrent renewals.
	maxRenewsInFlight = 16
)

// ActuatorConfig configures an Actuator.
type ActuatorConfig struct {
	// Store grants, registers, renews and revokes the replicas' leases
	// (cluster.NewReplicaStore, which seals the records it registers and
	// opens those adopted). Required.
	Store ReplicaLeases
	// TTL is each replica's lease TTL (flag --replica-ttl), rounded up to
	// whole seconds. Zero means DefaultReplicaTTL (30s); it must be at
	// least a second.
	TTL time.Duration
	// Copier makes the copy on the chosen node. Required.
	Copier Copier
	// Owner, if not nil, names a key's owner for Record.Owner. The Leader
	// passes the owners it computed instead.
	Owner func(hash uint64) string
	// Now stamps records and tracks lease expiry; it must keep the real
	// clock's pace, since leases expire in real time. Nil means time.Now.
	Now func() time.Time
	// Rand returns a uniform number in [0, 1) for renewal jitter. Nil means
	// math/rand/v2.
	Rand func() float64
	// Logger receives actuator events; nil discards them.
	Logger *slog.Logger
	// Registerer receives the actuator's metrics; nil registers none.
	Registerer prometheus.Registerer

	// MaxCopies bounds the scale-outs in flight; more are shed (ErrShed,
	// crowdpilot_autopilot_copy_shed_total). Zero means 8.
	MaxCopies int
	// CopyTimeout bounds one Copier.Copy. Zero means
	// min(DefaultCopyTimeout, TTL/2); it must be below TTL.
	CopyTimeout time.Duration
	// ApplyWait is the longest Apply waits for its scale-outs; those still
	// running carry on in the background (ErrPending). Zero means 1s.
	ApplyWait time.Duration
	// MaxLeases bounds the replica leases held for renewal; scale-outs
	// beyond it are shed. Zero means 4096.
	MaxLeases int
}

// Actuator is the leader's hands: it grants leases, has nodes copy objects,
// registers replicas under fenced transactions, and renews leases with
// jitter while Run is running.
type Actuator struct {
	store       ReplicaLeases
	ttl         time.Duration
	copier      Copier
	owner       func(uint64) string
	now         func() time.Time
	rand        func() float64
	log         *slog.Logger
	copyTimeout time.Duration
	applyWait   time.Duration
	maxLeases   int
	m           actuatorMetrics

	copies  chan struct{}  // a slot per scale-out in flight
	bg      sync.WaitGroup // scale-outs in flight
	running atomic.Bool
	wake    chan struct{} // cap 1: the renewal schedule changed

	// onLate, if set, receives the outcome of scale-outs that outlasted
	// ApplyWait. Set before use; read by scale-out goroutines.
	onLate atomic.Pointer[func(Action, error)]
	// onRenew, if set, is called after each successful renewal (tests).
	onRenew func(key string, at time.Time)

	mu     sync.Mutex             // guards leases and the entries in it
	leases map[string]*leaseEntry // by record key, at most maxLeases
}

// leaseEntry is one replica lease held for renewal.
type leaseEntry struct {
	id      int64  // the lease ID
	key     string // the record key
	hash    uint64
	node    string
	expires time.Time // never later than the real expiry
	renewAt time.Time // when to renew; zero when no renewal is asked for
	// released: scaled in, no longer renewed; kept to show its expiry.
	released bool
	renewing bool // a renewal is in flight
}

type actuatorMetrics struct {
	scaleOuts, scaleOutFailures, scaleIns prometheus.Counter
	renewals, renewalErrors, copyShed     prometheus.Counter
}

func newActuatorMetrics(reg prometheus.Registerer) (actuatorMetrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "crowdpilot_autopilot_" + name, Help: help})
	}
	m := actuatorMetrics{
		scaleOuts:        c("scale_out_total", "Replicas registered: lease granted, copy made, record written."),
		scaleOutFailures: c("scale_out_failures_total", "Scale-outs that failed (copy, fence, etcd) after starting; their lease was revoked."),
		scaleIns:         c("scale_in_total", "Replicas let go: their lease is no longer renewed."),
		renewals:         c("lease_renewals_total", "Replica lease renewals that succeeded."),
		renewalErrors:    c("lease_renewal_errors_total", "Replica lease renewals that failed."),
		copyShed:         c("copy_shed_total", "Scale-outs dropped because the copies in flight or the leases held were at their bound."),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.scaleOuts, m.scaleOutFailures, m.scaleIns, m.renewals, m.renewalErrors, m.copyShed} {
			if err := reg.Register(col); err != nil {
				return m, fmt.Errorf("register actuator metrics: %w", err)
			}
		}
	}
	return m, nil
}

// NewActuator validates cfg and returns an Actuator.
func NewActuator(cfg ActuatorConfig) (*Actuator, error) {
	if cfg.Store == nil {
		return nil, errors.New("actuator: Store is required")
	}
	if cfg.Copier == nil {
		return nil, errors.New("actuator: Copier is required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultReplicaTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("actuator: TTL %v must be at least 1s", cfg.TTL)
	}
	ttl := ceilSeconds(cfg.TTL)
	setDefault(&cfg.MaxCopies, DefaultMaxCopies)
	setDefault(&cfg.ApplyWait, DefaultApplyWait)
	setDefault(&cfg.MaxLeases, DefaultMaxLeases)
	setDefault(&cfg.CopyTimeout, min(DefaultCopyTimeout, ttl/2))
	switch {
	case cfg.MaxCopies < 0:
		return nil, fmt.Errorf("actuator: MaxCopies %d must be >= 0", cfg.MaxCopies)
	case cfg.ApplyWait < 0:
		return nil, fmt.Errorf("actuator: ApplyWait %v must be >= 0", cfg.ApplyWait)
	case cfg.MaxLeases < 0:
		return nil, fmt.Errorf("actuator: MaxLeases %d must be >= 0", cfg.MaxLeases)
	case cfg.CopyTimeout <= 0 || cfg.CopyTimeout >= ttl:
		return nil, fmt.Errorf("actuator: CopyTimeout %v must be in (0, TTL %v)", cfg.CopyTimeout, ttl)
	}
	m, err := newActuatorMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("actuator: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return &Actuator{
		store:       cfg.Store,
		ttl:         ttl,
		copier:      cfg.Copier,
		owner:       cfg.Owner,
		now:         cfg.Now,
		rand:        cfg.Rand,
		log:         orDiscard(cfg.Logger),
		copyTimeout: cfg.CopyTimeout,
		applyWait:   cfg.ApplyWait,
		maxLeases:   cfg.MaxLeases,
		m:           m,
		copies:      make(chan struct{}, cfg.MaxCopies),
		wake:        make(chan struct{}, 1),
		leases:      make(map[string]*leaseEntry),
	}, nil
}

// ceilSeconds rounds d up to whole seconds, as etcd lease TTLs are.
func ceilSeconds(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// TTL returns the replica lease TTL in use, rounded up to whole seconds.
func (a *Actuator) TTL() time.Duration { return a.ttl }

// Apply carries out actions under fence and returns an error per action
// (nil for success).
//
//   - ScaleOut grants a lease, has the node copy the key from its owner,
//     and registers the record under the lease in a transaction that also
//     checks fence and that no record exists; on any failure the lease is
//     revoked. At most MaxCopies run at once (more are shed, ErrShed); Apply
//     waits for them at most ApplyWait, after which they carry on under ctx
//     (ErrPending).
//   - Renew schedules a renewal of the replica's lease at a random point
//     while 25% to 10% of its TTL is left; Run performs it.
//   - ScaleIn stops renewing the lease, which then expires.
//
// Cancelling ctx abandons the scale-outs in flight.
func (a *Actuator) Apply(ctx context.Context, fence cluster.Fence, actions []Action) []error {
	return a.apply(ctx, fence, actions, nil)
}

// outcome is one scale-out's result, handed over to Apply or, if Apply has
// stopped waiting, to onLate.
type outcome struct {
	mu         sync.Mutex // guards the fields below
	err        error
	done, late bool
}

// apply is Apply with the owners of the keys, when the caller knows them.
func (a *Actuator) apply(ctx context.Context, fence cluster.Fence, actions []Action, owners map[uint64]string) []error {
	errs := make([]error, len(actions))
	outs := make([]*outcome, len(actions))
	var wg sync.WaitGroup
	for i, act := range actions {
		switch act.Kind {
		case ScaleOut:
			if !a.reserve() {
				a.m.copyShed.Inc()
				errs[i] = fmt.Errorf("scale out %q to %s: %w", act.Key, act.Node, ErrShed)
				continue
			}
			owner := owners[act.Hash]
			if owner == "" && a.owner != nil {
				owner = a.owner(act.Hash)
			}
			o := &outcome{}
			outs[i] = o
			wg.Add(1)
			a.bg.Go(func() {
				defer wg.Done()
				err := a.scaleOut(ctx, fence, act, owner)
				<-a.copies
				o.mu.Lock()
				o.err, o.done = err, true
				late := o.late
				o.mu.Unlock()
				if late {
					if f := a.onLate.Load(); f != nil {
						(*f)(act, err)
					}
				}
			})
		case ScaleIn:
			a.release(act)
		case Renew:
			errs[i] = a.schedule(act)
		default:
			errs[i] = fmt.Errorf("action %v for %q: unknown kind", act.Kind, act.Key)
		}
	}
	a.waitOutcomes(ctx, &wg)
	for i, o := range outs {
		if o == nil {
			continue
		}
		o.mu.Lock()
		if o.done {
			errs[i] = o.err
		} else {
			o.late = true
			errs[i] = fmt.Errorf("scale out %q to %s: %w", actions[i].Key, actions[i].Node, ErrPending)
		}
		o.mu.Unlock()
	}
	return errs
}

// reserve takes a copy slot if one is free and the lease bound allows.
func (a *Actuator) reserve() bool {
	a.mu.Lock()
	full := len(a.leases)+len(a.copies) >= a.maxLeases
	a.mu.Unlock()
	if full {
		return false
	}
	select {
	case a.copies <- struct{}{}:
		return true
	default:
		return false
	}
}

// waitOutcomes waits for wg at most ApplyWait, or until ctx is done.
func (a *Actuator) waitOutcomes(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }() // ends when the scale-outs do
	t := time.NewTimer(a.applyWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// scaleOut grants a lease, copies, and registers the record under fence.
func (a *Actuator) scaleOut(ctx context.Context, fence cluster.Fence, act Action, owner string) (err error) {
	key := a.recordKey(act.Hash, act.Node)
	defer func() {
		if err != nil {
			a.m.scaleOutFailures.Inc()
			a.log.Warn("autopilot: scale-out failed", "key", act.Key, "node", act.Node, "err", err)
		}
	}()
	since := a.now()
	lease, err := a.store.Grant(ctx, a.ttl)
	if err != nil {
		return fmt.Errorf("scale out %q to %s: %w", act.Key, act.Node, err)
	}
	expires := since.Add(lease.TTL)

	cctx, cancel := context.WithTimeout(ctx, a.copyTimeout)
	err = a.copier.Copy(cctx, act.Node, act.Key, act.From)
	cancel()
	if err != nil {
		a.revoke(ctx, lease.ID)
		return fmt.Errorf("scale out %q: copy to %s: %w", act.Key, act.Node, err)
	}

	rec := Record{
		Key: act.Key, Hash: act.Hash, Node: act.Node, Owner: owner, Reason: act.Reason, Since: since,
		TTL: lease.TTL,
	}
	if err := a.store.Register(ctx, fence, lease.ID, rec); err != nil {
		return fmt.Errorf("scale out %q to %s: %w", act.Key, act.Node, err)
	}

	a.mu.Lock()
	a.leases[key] = &leaseEntry{id: lease.ID, key: key, hash: act.Hash, node: act.Node, expires: expires}
	a.mu.Unlock()
	a.m.scaleOuts.Inc()
	a.log.Info("autopilot: scaled out", "key", act.Key, "node", act.Node, "lease", fmt.Sprintf("%x", lease.ID), "reason", act.Reason)
	return nil
}

// revoke revokes lease, bounded, even if ctx is done; if it fails the lease
// simply expires.
func (a *Actuator) revoke(ctx context.Context, lease int64) {
	if err := a.store.Revoke(ctx, lease); err != nil {
		a.log.Debug("autopilot: revoke failed; lease will expire", "lease", fmt.Sprintf("%x", lease), "err", err)
	}
}

func (a *Actuator) recordKey(hash uint64, node string) string { return a.store.Key(hash, node) }

// release stops renewing the replica's lease.
func (a *Actuator) release(act Action) {
	a.m.scaleIns.Inc()
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.leases[a.recordKey(act.Hash, act.Node)]; e != nil {
		e.released, e.renewAt = true, time.Time{}
	}
	a.log.Info("autopilot: scaled in", "key", act.Key, "node", act.Node, "reason", act.Reason)
}

var _ Copier = CopierFunc(nil)
