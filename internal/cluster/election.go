package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/crowdpilot/crowdpilot/internal/backoff"
)

// ErrNoLeader is returned by Leader when no candidate holds the election.
var ErrNoLeader = errors.New("cluster: no leader")

// LeaderPrefix is the election prefix, Prefix(cluster)+"leader". Candidates
// hold LeaderPrefix+"/<lease hex>" (the concurrency.Election layout); the
// oldest key is the leader.
func LeaderPrefix(cluster string) string { return Prefix(cluster) + "leader" }

// ElectionConfig configures an Election.
type ElectionConfig struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Cluster names the cluster. Required, without "/".
	Cluster string
	// ID identifies this candidate. Required.
	ID string
	// Value is published with the ID while leading, e.g. the admin address.
	Value string
	// TTL is the session lease TTL: how long a crashed leader keeps the
	// election. Zero means DefaultTTL; less than MinTTL is an error.
	// Rounded up to whole seconds.
	TTL time.Duration
	// Logger receives election events; nil discards them.
	Logger *slog.Logger
	// Records seals this candidate's key and opens the others': a
	// candidate key without a valid MAC is not a candidate, neither for
	// Leader nor for the campaign (it cannot block it). Nil means keys are
	// neither sealed nor checked.
	Records *Records
	// OnElected, if not nil, is called in its own goroutine each time this
	// candidate becomes leader. ctx is cancelled when leadership is lost or
	// Run ends; Run waits for OnElected to return before campaigning again
	// or returning, so it must honour ctx.
	OnElected func(ctx context.Context, fence Fence)
}

// Fence identifies one term of leadership: the leader's election key and its
// create revision. A write made in a transaction guarded by Cmp fails once
// that term is over, so a deposed leader cannot act.
type Fence struct {
	Key string
	Rev int64
}

// Cmp is the guard for fenced writes: the fence's key still exists with
// the create revision Rev.
func (f Fence) Cmp() Guard {
	return Guard{clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev)}
}

// Guard is a condition a store's write must meet to be made, such as a
// leader's fence (Fence.Cmp). Only this package builds one.
type Guard struct{ cmp clientv3.Cmp }

// guardCmps returns the etcd comparisons of guards.
func guardCmps(guards []Guard) []clientv3.Cmp {
	out := make([]clientv3.Cmp, len(guards))
	for i, g := range guards {
		out[i] = g.cmp
	}
	return out
}

// leaderRecord is the value stored under a candidate's key.
type leaderRecord struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// Election campaigns for leadership of a cluster, again and again, until
// its Run context is done.
type Election struct {
	client     *clientv3.Client
	prefix     string // LeaderPrefix(cluster)
	id         string
	value      string // encoded leaderRecord
	ttlSeconds int64
	log        *slog.Logger
	records    *Records
	onElected  func(context.Context, Fence)

	leader  atomic.Bool
	running atomic.Bool
}

// NewElection validates cfg and returns an Election; call Run to campaign.
func NewElection(cfg ElectionConfig) (*Election, error) {
	if cfg.Client == nil {
		return nil, errors.New("election: Client is required")
	}
	if err := ValidName("Cluster", cfg.Cluster); err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	if cfg.ID == "" {
		return nil, errors.New("election: ID is required")
	}
	ttl, err := leaseSeconds(cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("election %s: %w", cfg.ID, err)
	}
	val, err := json.Marshal(leaderRecord{ID: cfg.ID, Value: cfg.Value})
	if err != nil {
		return nil, fmt.Errorf("election %s: encode value: %w", cfg.ID, err)
	}
	return &Election{
		client:     cfg.Client,
		prefix:     LeaderPrefix(cfg.Cluster),
		id:         cfg.ID,
		value:      string(val),
		ttlSeconds: ttl,
		log:        orDiscard(cfg.Logger).With("candidate", cfg.ID),
		records:    cfg.Records,
		onElected:  cfg.OnElected,
	}, nil
}

// IsLeader reports whether this candidate currently holds the election.
func (e *Election) IsLeader() bool { return e.leader.Load() }

// Leader returns the ID and Value of the current leader, or ErrNoLeader: the
// oldest candidate key that opens (a key the cluster did not write is
// skipped, counted and logged). It asks etcd, so bound ctx: while etcd is
// unreachable it waits for ctx.
func (e *Election) Leader(ctx context.Context) (id, value string, err error) {
	resp, err := e.client.Get(ctx, e.prefix+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return "", "", fmt.Errorf("election leader under %s: %w", e.prefix, err)
	}
	for _, kv := range resp.Kvs {
		raw, ok := e.records.Open(KindLeader, string(kv.Key), kv.Lease, kv.Value)
		if !ok {
			continue
		}
		var rec leaderRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return "", "", fmt.Errorf("election leader %s: decode: %w", kv.Key, err)
		}
		return rec.ID, rec.Value, nil
	}
	return "", "", ErrNoLeader
}

// Run campaigns until ctx is done, then resigns (revokes its session) and
// returns nil. Each term uses a fresh concurrency.Session; when the session
// is lost, leadership ends (OnElected's ctx is cancelled) and Run campaigns
// again. While etcd is unreachable it retries with capped, jittered
// exponential backoff.
func (e *Election) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return fmt.Errorf("election %s: %w", e.id, ErrRunning)
	}
	defer e.running.Store(false)
	bo := backoff.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		err := e.term(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			bo.Reset() // led, then lost it: campaign again at once
			continue
		}
		d := bo.Next()
		e.log.Warn("election: campaign failed; retrying", "in", d, "err", err)
		backoff.Sleep(ctx, d)
	}
}

// term runs one session: campaign, lead until the session or ctx ends, and
// revoke. It returns nil if it led.
func (e *Election) term(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	g, err := e.client.Grant(gctx, e.ttlSeconds)
	cancel()
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	// The session's context must outlive ctx only long enough for the
	// bounded revoke in closeSession; Orphan stops its keep-alive.
	sess, err := concurrency.NewSession(e.client,
		concurrency.WithLease(g.ID),
		concurrency.WithTTL(int(e.ttlSeconds)),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		e.revoke(ctx, g.ID)
		return fmt.Errorf("session for lease %x: %w", int64(g.ID), err)
	}
	defer e.closeSession(ctx, sess)

	// cctx ends with ctx or with the session.
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	stop := context.AfterFunc(sess.Ctx(), ccancel)
	defer stop()

	fence, err := e.campaign(cctx, sess)
	if err != nil {
		if sess.Ctx().Err() != nil {
			return fmt.Errorf("campaign: session lost: %w", err)
		}
		return fmt.Errorf("campaign: %w", err)
	}
	e.lead(cctx, fence, e.sealed(fence.Key, sess.Lease()))
	return nil
}

// closeSession stops the keep-alive and revokes the lease, deleting this
// candidate's key (resigning) if it still exists.
func (e *Election) closeSession(ctx context.Context, sess *concurrency.Session) {
	sess.Orphan()
	e.revoke(ctx, sess.Lease())
}

func (e *Election) revoke(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if _, err := e.client.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.log.Debug("election: revoke failed; lease will expire", "lease", fmt.Sprintf("%x", int64(lease)), "err", err)
	}
}

// campaign puts this candidate's key and waits until every older candidate
// key is gone. It is concurrency.Election.Campaign without its unbounded
// resign on cancel (which would block shutdown while etcd is down; the
// caller revokes the session instead).
func (e *Election) campaign(ctx context.Context, sess *concurrency.Session) (Fence, error) {
	key := fmt.Sprintf("%s/%x", e.prefix, int64(sess.Lease()))
	val := e.sealed(key, sess.Lease())
	tctx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := e.client.Txn(tctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	cancel()
	if err != nil {
		return Fence{}, fmt.Errorf("put %s: %w", key, err)
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	if err := e.waitDeletes(ctx, rev-1); err != nil {
		return Fence{}, err
	}
	// The session may have expired while waiting: confirm the key is ours.
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	got, err := e.client.Get(gctx, key)
	cancel()
	if err != nil {
		return Fence{}, fmt.Errorf("confirm %s: %w", key, err)
	}
	if len(got.Kvs) == 0 || got.Kvs[0].CreateRevision != rev {
		return Fence{}, fmt.Errorf("confirm %s: key lost while waiting", key)
	}
	if string(got.Kvs[0].Value) != val {
		return Fence{}, fmt.Errorf("confirm %s: key overwritten while waiting", key)
	}
	return Fence{Key: key, Rev: rev}, nil
}

// sealed is this candidate's value as stored at key under lease.
func (e *Election) sealed(key string, lease clientv3.LeaseID) string {
	return string(e.records.Seal(key, int64(lease), []byte(e.value)))
}

// waitDeletes waits until no candidate key created at or before maxRev is
// left, among those that open: a key the cluster did not write does not
// hold the election.
func (e *Election) waitDeletes(ctx context.Context, maxRev int64) error {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMaxCreateRev(maxRev),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend)}
	for {
		gctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := e.client.Get(gctx, e.prefix+"/", opts...)
		cancel()
		if err != nil {
			return fmt.Errorf("list candidates under %s: %w", e.prefix, err)
		}
		var older string // the newest genuine candidate older than this one
		for _, kv := range resp.Kvs {
			if _, ok := e.records.Open(KindLeader, string(kv.Key), kv.Lease, kv.Value); ok {
				older = string(kv.Key)
				break
			}
		}
		if older == "" {
			return nil
		}
		if err := e.waitDelete(ctx, older, resp.Header.Revision); err != nil {
			return err
		}
	}
}

// waitDelete waits for key to be deleted after rev.
func (e *Election) waitDelete(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range e.client.Watch(wctx, key, clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("watch %s: %w", key, err)
	}
	return fmt.Errorf("watch %s: channel closed", key)
}

// lead holds leadership until ctx ends (session lost or Run stopping) or the
// key is deleted or no longer holds own (the value this candidate wrote),
// running OnElected meanwhile.
func (e *Election) lead(ctx context.Context, fence Fence, own string) {
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	e.leader.Store(true)
	e.log.Info("election: elected", "key", fence.Key, "rev", fence.Rev)

	var wg sync.WaitGroup
	if e.onElected != nil {
		wg.Go(func() { e.onElected(lctx, fence) })
	}

	wch := e.client.Watch(lctx, fence.Key, clientv3.WithRev(fence.Rev+1))
	for held := true; held; {
		select {
		case <-lctx.Done():
			held = false
		case wr, ok := <-wch:
			if !ok {
				wch = nil // the session still guards the term
				continue
			}
			for _, ev := range wr.Events {
				// Deleted, or overwritten by someone else: the others no
				// longer see this key as the leader's, so step down (the
				// session is revoked and the next candidate leads).
				if ev.Type == mvccpb.DELETE || string(ev.Kv.Value) != own {
					held = false
				}
			}
		}
	}
	e.leader.Store(false)
	lcancel()
	wg.Wait()
	e.log.Info("election: leadership ended", "key", fence.Key, "rev", fence.Rev)
}
