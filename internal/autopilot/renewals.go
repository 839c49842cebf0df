package autopilot

// Lease lifecycle of the replicas a leader holds: renewal with jitter,
// adoption by a new leader, and expiry lookups for the hot view.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// schedule asks for a renewal of the replica's lease, at a random point of
// what is left of the window from 25% to 10% of the TTL remaining.
func (a *Actuator) schedule(act Action) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.leases[a.recordKey(act.Hash, act.Node)]
	if e == nil {
		return fmt.Errorf("renew %q on %s: %w", act.Key, act.Node, ErrUnknownReplica)
	}
	if e.released || e.renewing || !e.renewAt.IsZero() {
		return nil
	}
	now := a.now()
	lo := e.expires.Add(-time.Duration(renewFraction * float64(a.ttl)))
	hi := e.expires.Add(-time.Duration(renewLatest * float64(a.ttl)))
	if lo.Before(now) {
		lo = now
	}
	e.renewAt = now
	if hi.After(lo) {
		e.renewAt = lo.Add(time.Duration(a.rand() * float64(hi.Sub(lo))))
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run renews the scheduled leases until ctx is done, then drops the
// schedule: a deposed leader renews nothing, and its replicas expire unless
// the next leader adopts them. It returns nil, or ErrRunning if already
// running. Renewals happen only while Run runs.
func (a *Actuator) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return fmt.Errorf("actuator: %w", ErrRunning)
	}
	defer a.running.Store(false)

	var wg sync.WaitGroup
	slots := make(chan struct{}, maxRenewsInFlight)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
loop:
	for {
		due, wait := a.due()
		for _, e := range due {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				a.unmark(due)
				break loop
			}
			wg.Go(func() {
				defer func() { <-slots }()
				a.renew(ctx, e)
			})
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
		case <-a.wake:
		}
	}
	wg.Wait()
	a.bg.Wait()
	a.mu.Lock()
	clear(a.leases)
	a.mu.Unlock()
	return nil
}

// due marks and returns the leases whose renewal is due, prunes leases long
// expired, and returns how long until the next renewal.
func (a *Actuator) due() ([]*leaseEntry, time.Duration) {
	now := a.now()
	wait := time.Hour
	var due []*leaseEntry
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.leases {
		if now.Sub(e.expires) > a.ttl {
			delete(a.leases, k) // gone from etcd long ago
			continue
		}
		if e.released || e.renewing || e.renewAt.IsZero() {
			continue
		}
		if d := e.renewAt.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		e.renewing = true
		due = append(due, e)
	}
	return due, wait
}

// unmark clears the renewing mark of leases not renewed after all.
func (a *Actuator) unmark(es []*leaseEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range es {
		e.renewing = false
	}
}

// renew renews one lease once.
func (a *Actuator) renew(ctx context.Context, e *leaseEntry) {
	start := a.now()
	ttl, err := a.store.Renew(ctx, e.id)

	a.mu.Lock()
	e.renewing = false
	if a.leases[e.key] != e {
		a.mu.Unlock()
		return // dropped meanwhile
	}
	switch {
	case err == nil:
		e.expires = start.Add(ttl)
		e.renewAt = time.Time{}
	case errors.Is(err, cluster.ErrLeaseNotFound):
		delete(a.leases, e.key)
	case ctx.Err() == nil:
		e.renewAt = a.now().Add(renewRetry) // due again; Run is woken below
	}
	onRenew := a.onRenew
	a.mu.Unlock()

	if err != nil {
		if ctx.Err() != nil {
			return // leadership over: not an error of the lease
		}
		a.m.renewalErrors.Inc()
		a.log.Warn("autopilot: lease renewal failed", "record", e.key, "lease", fmt.Sprintf("%x", e.id), "err", err)
		select {
		case a.wake <- struct{}{}:
		default:
		}
		return
	}
	a.m.renewals.Inc()
	if onRenew != nil {
		onRenew(e.key, start)
	}
}

// Adopt takes over the renewal of the replicas registered in etcd, as a new
// leader must: it reads the records and asks etcd when each lease expires.
// The schedule becomes exactly what is found; records whose lease is gone
// are skipped.
func (a *Actuator) Adopt(ctx context.Context) error {
	// Records that do not open are not ours to renew: List leaves them out.
	recs, err := a.store.List(ctx)
	if err != nil {
		return fmt.Errorf("adopt replicas: %w", err)
	}
	found, err := a.leaseExpiries(ctx, recs)
	if err != nil {
		return err
	}
	a.mu.Lock()
	clear(a.leases)
	for k, e := range found {
		a.leases[k] = e
	}
	a.mu.Unlock()
	a.log.Info("autopilot: adopted replica leases", "records", len(recs), "live", len(found))
	return nil
}

// adoptMissing adopts those of recs whose lease this actuator does not
// hold, at most limit of them; it returns how many were adopted.
func (a *Actuator) adoptMissing(ctx context.Context, recs []Record, limit int) int {
	var missing []Record
	a.mu.Lock()
	for _, r := range recs {
		if len(missing) == limit {
			break
		}
		if r.Lease == 0 { // no lease
			continue
		}
		if e := a.leases[a.recordKey(r.Hash, r.Node)]; e == nil || e.id != r.Lease {
			missing = append(missing, r)
		}
	}
	a.mu.Unlock()
	if len(missing) == 0 {
		return 0
	}
	found, err := a.leaseExpiries(ctx, missing)
	if err != nil {
		a.log.Debug("autopilot: adopting new records failed", "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range found {
		if len(a.leases) >= a.maxLeases {
			break
		}
		a.leases[k] = e
	}
	return len(found)
}

// leaseExpiries asks etcd how long each record's lease has left. It returns
// entries for the live ones, and an error if etcd could not be asked.
func (a *Actuator) leaseExpiries(ctx context.Context, recs []Record) (map[string]*leaseEntry, error) {
	found := make(map[string]*leaseEntry, len(recs))
	for _, r := range recs {
		if len(found) >= a.maxLeases {
			break
		}
		if r.Lease == 0 { // no lease
			continue
		}
		start := a.now()
		ttl, err := a.store.TimeToLive(ctx, r.Lease)
		if err != nil {
			if errors.Is(err, cluster.ErrLeaseNotFound) {
				continue
			}
			return found, fmt.Errorf("adopt %s: %w", a.recordKey(r.Hash, r.Node), err)
		}
		if ttl <= 0 {
			continue // expired
		}
		key := a.recordKey(r.Hash, r.Node)
		found[key] = &leaseEntry{
			id: r.Lease, key: key, hash: r.Hash, node: r.Node,
			expires: start.Add(ttl),
		}
	}
	return found, nil
}

// expiry returns when the replica's lease expires, as far as this actuator
// knows, whether it was released (scaled in), and whether the lease is held
// at all.
func (a *Actuator) expiry(hash uint64, node string) (expires time.Time, released, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.leases[a.recordKey(hash, node)]
	if e == nil {
		return time.Time{}, false, false
	}
	return e.expires, e.released, true
}

// Compile-time check of the adapter.
