package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/backoff"
)

// Lease TTL bounds for memberships and elections.
const (
	DefaultTTL = 5 * time.Second
	MinTTL     = 2 * time.Second
)

// opTimeout bounds each etcd call made by a background loop, so a loop
// blocked on an unreachable etcd still notices its context and retries.
const opTimeout = 2 * time.Second

var (
	// ErrDeregistered is returned by Update after Deregister.
	ErrDeregistered = errors.New("cluster: member deregistered")
	// ErrNotRegistered is returned by Update when there is no live lease to
	// put the record under; the change is kept and published at the next
	// registration.
	ErrNotRegistered = errors.New("cluster: member not registered")
	// ErrRunning is returned by Run when the same value is already running.
	ErrRunning = errors.New("cluster: already running")
)

// Prefix is the root of all of a cluster's keys: "/crowdpilot/<cluster>/".
func Prefix(cluster string) string { return "/crowdpilot/" + cluster + "/" }

// MembersPrefix is where member records live: Prefix(cluster)+"members/".
func MembersPrefix(cluster string) string { return Prefix(cluster) + "members/" }

// Member is one node's record under MembersPrefix, stored as JSON.
type Member struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`  // data listener host:port
	Admin string `json:"admin"` // admin listener host:port
	// Peer is the peer listener host:port, where nodes with node-to-node
	// TLS reach this one; empty without it.
	Peer     string `json:"peer,omitempty"`
	Zone     string `json:"zone,omitempty"`
	Draining bool   `json:"draining,omitempty"`
	PurgeRev int64  `json:"purge_rev,omitempty"` // last purge-log revision applied

	// Labels are the node's operator labels (--labels), as name=value
	// pairs sorted by name and comma-separated; tenants isolated on
	// labels use only nodes that carry them.
	Labels string `json:"labels,omitempty"`

	// Owned is how far this node's membership view had reached (its
	// ViewRevision) when, since it started, it first acted as the owner
	// of a key: filled a miss as the owner, adopted a copy or took over
	// for a suspected owner; zero until then (see Unowned). A node that joined (or
	// returned) after that view holds no copy it took as a key's previous
	// owner, so the new owner need not ask it (see node's handoff).
	Owned int64 `json:"owned,omitempty"`
	// Unowned: this node has not acted as any key's owner since it
	// started (it publishes Owned when it does). A record with neither
	// Unowned nor Owned says nothing (a node from before these fields) and
	// is peeked.
	Unowned bool `json:"unowned,omitempty"`
	// TookOver: since it started, this node has fetched from the origin in
	// place of a suspected owner, so it may hold keys a live member owns.
	TookOver bool `json:"took_over,omitempty"`

	// Joined and Mod are the etcd create and mod revisions of the record
	// (this registration's and its latest write), from etcd, not the
	// record; zero in a record not read from etcd.
	Joined int64 `json:"-"`
	Mod    int64 `json:"-"`
}

// MembershipConfig configures a Membership.
type MembershipConfig struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Cluster names the cluster; records live under MembersPrefix(Cluster).
	// Required, without "/".
	Cluster string
	// Self is this node's record. ID (without "/") and Addr are required.
	Self Member
	// TTL is the lease TTL: how long a crashed node stays listed. Zero means
	// DefaultTTL; less than MinTTL is an error. Rounded up to whole seconds.
	TTL time.Duration
	// Logger receives membership events; nil discards them.
	Logger *slog.Logger
	// Records seals this node's record and opens the others': a record
	// without a valid MAC is left out of the membership. Nil means records
	// are neither sealed nor checked.
	Records *Records
	// OnChange, if not nil, receives the full membership sorted by ID after
	// the initial load and after every change. It is called serially from
	// the watch goroutine, so it should return quickly; the slice is shared
	// and must not be modified.
	OnChange func(members []Member)
}

// Membership registers this node under a lease and keeps a watched snapshot
// of all members.
type Membership struct {
	client     *clientv3.Client
	prefix     string // MembersPrefix(cluster)
	key        string // prefix + self ID
	ttlSeconds int64
	log        *slog.Logger
	records    *Records
	onChange   func([]Member)

	snapshot   atomic.Pointer[[]Member]
	viewRev    atomic.Int64 // the highest Mod in the snapshot
	loaded     atomic.Bool
	registered atomic.Bool
	running    atomic.Bool

	// sem is a one-slot semaphore (a mutex that honours contexts). It
	// guards self, lease, keepCancel and deregistered, and serialises every
	// put of the own record so the last put always carries the latest self.
	sem          chan struct{}
	self         Member
	lease        clientv3.LeaseID // NoLease when not registered
	keepCancel   context.CancelFunc
	deregistered bool

	dereg      context.Context    // done once Deregister is called
	deregister context.CancelFunc // ends dereg
}

// NewMembership validates cfg and returns a Membership; call Run to join.
func NewMembership(cfg MembershipConfig) (*Membership, error) {
	if cfg.Client == nil {
		return nil, errors.New("membership: Client is required")
	}
	if err := ValidName("Cluster", cfg.Cluster); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	if err := ValidName("Self.ID", cfg.Self.ID); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	if cfg.Self.Addr == "" {
		return nil, fmt.Errorf("membership %s: Self.Addr is required", cfg.Self.ID)
	}
	ttl, err := leaseSeconds(cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("membership %s: %w", cfg.Self.ID, err)
	}
	prefix := MembersPrefix(cfg.Cluster)
	dereg, deregister := context.WithCancel(context.Background())
	return &Membership{
		client:     cfg.Client,
		prefix:     prefix,
		key:        prefix + cfg.Self.ID,
		ttlSeconds: ttl,
		log:        orDiscard(cfg.Logger).With("member", cfg.Self.ID),
		records:    cfg.Records,
		onChange:   cfg.OnChange,
		sem:        make(chan struct{}, 1),
		self:       cfg.Self,
		lease:      clientv3.NoLease,
		dereg:      dereg,
		deregister: deregister,
	}, nil
}

// ValidName checks a cluster or node name used as a segment of etcd keys:
// required, and without '/'. field names it in the error.
func ValidName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", field)
	}
	if strings.Contains(s, "/") {
		return fmt.Errorf("%s %q must not contain '/'", field, s)
	}
	return nil
}

// leaseSeconds applies the TTL default and minimum and rounds up to seconds.
func leaseSeconds(ttl time.Duration) (int64, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL {
		return 0, fmt.Errorf("TTL %v is below the minimum %v", ttl, MinTTL)
	}
	return int64((ttl + time.Second - 1) / time.Second), nil
}

// Run joins the cluster and keeps the membership snapshot current until ctx
// is done, then returns nil. It registers Self under a lease kept alive in
// the background, re-registers whenever the lease is lost, and watches the
// members prefix, resuming from the last revision seen (reloading after a
// compaction). While etcd is unreachable it retries with capped, jittered
// exponential backoff and keeps the last snapshot.
//
// Cancelling ctx does not revoke the lease: the record expires within the
// TTL, as for a crash. To leave at once, call Deregister first.
func (m *Membership) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return fmt.Errorf("membership %s: %w", m.key, ErrRunning)
	}
	defer m.running.Store(false)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { m.watchLoop(ctx) })
	m.registerLoop(ctx)
	<-ctx.Done() // after Deregister, keep watching until told to stop
	cancel()
	wg.Wait()
	return nil
}

// Members returns the last membership snapshot, sorted by ID. It never
// blocks; the slice is shared and must not be modified.
func (m *Membership) Members() []Member {
	if p := m.snapshot.Load(); p != nil {
		return *p
	}
	return nil
}

// ViewRevision is the highest etcd mod revision among the records this
// node has seen (it never goes down): every record created at or before
// it that still exists is in Members.
func (m *Membership) ViewRevision() int64 { return m.viewRev.Load() }

// Ready reports whether this node has registered and sees itself in the
// member list it watches: its registration has come back through the
// watch, so what it reports about the cluster includes itself.
func (m *Membership) Ready() bool {
	if !m.registered.Load() || !m.loaded.Load() {
		return false
	}
	id := strings.TrimPrefix(m.key, m.prefix) // the ID never changes
	for _, mem := range m.Members() {
		if mem.ID == id {
			return true
		}
	}
	return false
}

// Update applies fn to this node's record, keeps the result for later
// registrations, and puts it under the current lease. fn must not change the
// ID. If there is no live lease the change is kept and an error wrapping
// ErrNotRegistered is returned; it is published at the next registration.
func (m *Membership) Update(ctx context.Context, fn func(*Member)) error {
	if err := m.lock(ctx); err != nil {
		return fmt.Errorf("update member %s: %w", m.key, err)
	}
	defer m.unlock()
	if m.deregistered {
		return fmt.Errorf("update member %s: %w", m.key, ErrDeregistered)
	}
	next := m.self
	fn(&next)
	if next.ID != m.self.ID {
		return fmt.Errorf("update member %s: ID cannot change (to %q)", m.key, next.ID)
	}
	m.self = next
	if m.lease == clientv3.NoLease {
		return fmt.Errorf("update member %s: %w", m.key, ErrNotRegistered)
	}
	if err := m.putSelf(ctx, m.lease); err != nil {
		return fmt.Errorf("update member: %w", err)
	}
	return nil
}

// Deregister revokes the lease, so the record disappears at once, and stops
// Run from registering again (Run keeps watching until its ctx is done). If
// the revoke fails the record still expires within the TTL.
func (m *Membership) Deregister(ctx context.Context) error {
	if err := m.lock(ctx); err != nil {
		return fmt.Errorf("deregister %s: %w", m.key, err)
	}
	m.deregistered = true
	m.deregister()
	lease := m.lease
	m.dropLeaseLocked()
	m.unlock()

	if lease == clientv3.NoLease {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := m.client.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("deregister %s: revoke lease %x: %w", m.key, int64(lease), err)
	}
	m.log.Info("membership: deregistered")
	return nil
}

// lock acquires sem or gives up when ctx is done.
func (m *Membership) lock(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Membership) unlock() { <-m.sem }

// dropLeaseLocked forgets the current lease and stops its keep-alive.
// Callers hold sem.
func (m *Membership) dropLeaseLocked() {
	if m.keepCancel != nil {
		m.keepCancel()
		m.keepCancel = nil
	}
	m.lease = clientv3.NoLease
}

// putSelf writes self under lease. Callers hold sem.
func (m *Membership) putSelf(ctx context.Context, lease clientv3.LeaseID) error {
	val, err := json.Marshal(m.self)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.key, err)
	}
	val = m.records.Seal(m.key, int64(lease), val)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := m.client.Put(ctx, m.key, string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("put %s: %w", m.key, err)
	}
	return nil
}

// registerLoop keeps this node registered until ctx is done or Deregister.
func (m *Membership) registerLoop(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.dereg, cancel)() // Deregister ends waits too
	defer func() {
		// Stop keep-alives; the lease is left to expire (crash semantics).
		_ = m.lock(context.WithoutCancel(ctx))
		m.dropLeaseLocked()
		m.unlock()
	}()
	bo := backoff.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		if m.dereg.Err() != nil {
			return
		}
		ka, lease, err := m.register(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrDeregistered) {
				return
			}
			d := bo.Next()
			m.log.Warn("membership: register failed; retrying", "in", d, "err", err)
			if !backoff.Sleep(ctx, d) {
				return
			}
			continue
		}
		bo.Reset()
		m.log.Info("membership: registered", "lease", fmt.Sprintf("%x", int64(lease)), "ttl_s", m.ttlSeconds)

		if !m.keepAlive(ctx, ka) {
			return
		}
		m.log.Warn("membership: lease lost; re-registering", "lease", fmt.Sprintf("%x", int64(lease)))
		if err := m.lock(ctx); err != nil {
			return
		}
		if m.lease == lease {
			m.dropLeaseLocked()
		}
		m.unlock()
	}
}

// keepAlive drains keep-alive responses. It returns true when the lease is
// lost (the channel closed) and false when ctx is done or Deregister was
// called.
func (m *Membership) keepAlive(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-m.dereg.Done():
			return false
		case _, ok := <-ka:
			if !ok {
				select {
				case <-m.dereg.Done():
					return false
				default:
					return ctx.Err() == nil
				}
			}
		}
	}
}

// register grants a lease, starts its keep-alive and puts self under it.
func (m *Membership) register(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, clientv3.LeaseID, error) {
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := m.client.Grant(gctx, m.ttlSeconds)
	cancel()
	if err != nil {
		return nil, clientv3.NoLease, fmt.Errorf("grant lease: %w", err)
	}
	lease := resp.ID
	// kctx stops the keep-alive; on failure the lease simply expires.
	kctx, kcancel := context.WithCancel(ctx)
	ka, err := m.client.KeepAlive(kctx, lease)
	if err != nil {
		kcancel()
		return nil, clientv3.NoLease, fmt.Errorf("keep lease %x alive: %w", int64(lease), err)
	}
	if err := m.lock(ctx); err != nil {
		kcancel()
		return nil, clientv3.NoLease, err
	}
	defer m.unlock()
	if m.deregistered {
		kcancel()
		return nil, clientv3.NoLease, ErrDeregistered
	}
	if err := m.putSelf(ctx, lease); err != nil {
		kcancel()
		return nil, clientv3.NoLease, err
	}
	m.dropLeaseLocked()
	m.lease, m.keepCancel = lease, kcancel
	m.registered.Store(true)
	return ka, lease, nil
}

// watchLoop loads the members prefix and follows it until ctx is done.
func (m *Membership) watchLoop(ctx context.Context) {
	w := PrefixWatcher[Member]{
		Client: m.client,
		Prefix: m.prefix,
		Decode: m.decode,
		OnChange: func(members map[string]Member) {
			m.publish(members)
			m.loaded.Store(true)
		},
		Logger: m.log,
	}
	w.Run(ctx)
}

// decode reads a member record; false drops a bad one.
func (m *Membership) decode(kv *mvccpb.KeyValue) (Member, bool) {
	id := strings.TrimPrefix(string(kv.Key), m.prefix)
	if id == "" || strings.Contains(id, "/") {
		return Member{}, false
	}
	raw, ok := m.records.Open(KindMember, string(kv.Key), kv.Lease, kv.Value)
	if !ok {
		return Member{}, false // counted and logged by Open
	}
	var rec Member
	if err := json.Unmarshal(raw, &rec); err != nil {
		m.log.Warn("membership: ignoring bad member record", "key", string(kv.Key), "err", err)
		return Member{}, false
	}
	rec.ID = id // the key is authoritative
	rec.Joined, rec.Mod = kv.CreateRevision, kv.ModRevision
	return rec, true
}

// publish stores a sorted snapshot of members and calls OnChange.
func (m *Membership) publish(members map[string]Member) {
	snap := make([]Member, 0, len(members))
	for _, rec := range members {
		snap = append(snap, rec)
	}
	slices.SortFunc(snap, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	var rev int64
	for _, rec := range snap {
		rev = max(rev, rec.Mod)
	}
	m.snapshot.Store(&snap)
	m.viewRev.Store(max(rev, m.viewRev.Load()))
	m.log.Debug("membership: snapshot", "members", len(snap))
	if m.onChange != nil {
		m.onChange(snap)
	}
}
