package autopilot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

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

// Errors the Actuator reports per action.
var (
	// ErrFenced: the fence failed, so this leader's term is over.
	ErrFenced = errors.New("autopilot: leadership lost (fence failed)")
	// ErrReplicaExists: a record for the replica is already registered.
	ErrReplicaExists = errors.New("autopilot: replica already registered")
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
	// maxRenewsInFlight bounds concurrent KeepAliveOnce calls.
	maxRenewsInFlight = 16
)

// ActuatorConfig configures an Actuator.
type ActuatorConfig struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Cluster names the cluster; records go under ReplicasPrefix(Cluster).
	// Required, without "/".
	Cluster string
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
	// Records seals the records the actuator writes, and opens those it
	// adopts. Nil means records are neither sealed nor checked.
	Records *cluster.Records
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
	client      *clientv3.Client
	prefix      string
	ttl         time.Duration
	ttlSeconds  int64
	copier      Copier
	owner       func(uint64) string
	now         func() time.Time
	rand        func() float64
	log         *slog.Logger
	records     *cluster.Records
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
	id      clientv3.LeaseID
	key     string // the record key
	hash    uint64
	node    string
	expires time.Time // never later than the real expiry
	renewAt time.Time // when to renew; zero when no renewal is asked for
	// released: scaled in, no longer renewed; kept to show its expiry.
	released bool
	renewing bool // a KeepAliveOnce is in flight
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
	if cfg.Client == nil {
		return nil, errors.New("actuator: Client is required")
	}
	if err := cluster.ValidName("Cluster", cfg.Cluster); err != nil {
		return nil, fmt.Errorf("actuator: %w", err)
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
	ttlSeconds := int64(ttl / time.Second)
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
		client:      cfg.Client,
		prefix:      ReplicasPrefix(cfg.Cluster),
		ttl:         ttl,
		ttlSeconds:  ttlSeconds,
		copier:      cfg.Copier,
		owner:       cfg.Owner,
		now:         cfg.Now,
		rand:        cfg.Rand,
		log:         orDiscard(cfg.Logger),
		records:     cfg.Records,
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
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	g, err := a.client.Grant(gctx, a.ttlSeconds)
	cancel()
	if err != nil {
		return fmt.Errorf("scale out %q to %s: grant lease: %w", act.Key, act.Node, err)
	}
	lease := g.ID
	expires := since.Add(time.Duration(g.TTL) * time.Second)

	cctx, cancel := context.WithTimeout(ctx, a.copyTimeout)
	err = a.copier.Copy(cctx, act.Node, act.Key, act.From)
	cancel()
	if err != nil {
		a.revoke(ctx, lease)
		return fmt.Errorf("scale out %q: copy to %s: %w", act.Key, act.Node, err)
	}

	val, err := json.Marshal(Record{
		Key: act.Key, Owner: owner, Reason: act.Reason, Since: since,
		TTL: time.Duration(g.TTL) * time.Second,
	})
	if err != nil {
		a.revoke(ctx, lease)
		return fmt.Errorf("scale out %q to %s: encode record: %w", act.Key, act.Node, err)
	}
	tctx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := a.client.Txn(tctx).
		If(fence.Cmp(), clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(a.records.Seal(key, int64(lease), val)), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(fence.Key, clientv3.WithKeysOnly()), clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	cancel()
	if err != nil {
		// The transaction may have committed all the same.
		switch registered, known := a.registered(ctx, key, lease); {
		case registered:
			err = nil
		case known:
			a.revoke(ctx, lease)
		default:
			// Unknown: leave the lease to expire, or its record to be
			// adopted, rather than delete a replica that may be serving.
		}
		if err != nil {
			return fmt.Errorf("scale out %q to %s: register %s: %w", act.Key, act.Node, key, err)
		}
	} else if !resp.Succeeded {
		a.revoke(ctx, lease)
		why := ErrReplicaExists
		if fk := resp.Responses[0].GetResponseRange().GetKvs(); len(fk) == 0 || fk[0].CreateRevision != fence.Rev {
			why = ErrFenced
		}
		return fmt.Errorf("scale out %q to %s: register %s: %w", act.Key, act.Node, key, why)
	}

	a.mu.Lock()
	a.leases[key] = &leaseEntry{id: lease, key: key, hash: act.Hash, node: act.Node, expires: expires}
	a.mu.Unlock()
	a.m.scaleOuts.Inc()
	a.log.Info("autopilot: scaled out", "key", act.Key, "node", act.Node, "lease", fmt.Sprintf("%x", int64(lease)), "reason", act.Reason)
	return nil
}

// registered asks etcd whether key is registered under lease, after a
// transaction whose outcome is unknown. known is false if etcd could not
// tell. It asks even if ctx is done.
func (a *Actuator) registered(ctx context.Context, key string, lease clientv3.LeaseID) (registered, known bool) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	resp, err := a.client.Get(gctx, key)
	if err != nil {
		return false, false
	}
	return len(resp.Kvs) == 1 && resp.Kvs[0].Lease == int64(lease), true
}

// revoke revokes lease, bounded, even if ctx is done; if it fails the lease
// simply expires.
func (a *Actuator) revoke(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if _, err := a.client.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		a.log.Debug("autopilot: revoke failed; lease will expire", "lease", fmt.Sprintf("%x", int64(lease)), "err", err)
	}
}

func (a *Actuator) recordKey(hash uint64, node string) string {
	return fmt.Sprintf("%s%016x/%s", a.prefix, hash, node)
}

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
