package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReplicasPrefix is where replica records live: Prefix(cluster)+"replicas/".
func ReplicasPrefix(cluster string) string { return Prefix(cluster) + "replicas/" }

// ReplicaKey is the key of the record of key hash's replica on node:
// ReplicasPrefix(cluster)+"<hash, 16 hex digits>/<node>".
func ReplicaKey(cluster string, hash uint64, node string) string {
	return replicaKey(ReplicasPrefix(cluster), hash, node)
}

func replicaKey(prefix string, hash uint64, node string) string {
	return fmt.Sprintf("%s%016x/%s", prefix, hash, node)
}

// Replica is one replica's registration, stored as JSON at
// ReplicaKey(cluster, Hash, Node) under the replica's own lease: when the
// lease expires, etcd deletes the record and every node drops the replica.
type Replica struct {
	Key    string        `json:"key"`    // the base cache key
	Hash   uint64        `json:"-"`      // from the etcd key, which is authoritative
	Node   string        `json:"-"`      // from the etcd key
	Owner  string        `json:"owner"`  // the key's owner when the replica was made, for people
	Reason string        `json:"reason"` // why the replica was made
	Since  time.Time     `json:"since"`  // when its lease was granted
	Lease  int64         `json:"-"`      // the lease ID, from the etcd key-value; 0: none
	TTL    time.Duration `json:"ttl"`    // the lease's TTL as granted
}

// Errors of ReplicaStore.
var (
	// ErrFenced: a write guarded by a leader's fence failed, so that
	// leader's term is over.
	ErrFenced = errors.New("cluster: leadership lost (fence failed)")
	// ErrReplicaExists: a record for the replica is already registered.
	ErrReplicaExists = errors.New("cluster: replica already registered")
	// ErrLeaseNotFound: the lease has expired or was revoked.
	ErrLeaseNotFound = errors.New("cluster: lease not found (expired or revoked)")
)

// errUnauthenticated: a record without a valid MAC (see Records).
var errUnauthenticated = errors.New("not authenticated under the cluster secret")

// Lease is a lease granted by etcd.
type Lease struct {
	ID  int64
	TTL time.Duration // as granted, whole seconds
}

// ReplicaStore holds the replica records and their leases: the leader
// grants a lease per replica, registers the record under it (fenced), and
// renews it while the replica is wanted; every node watches the records.
// Each call to etcd is bounded by opTimeout (2s).
type ReplicaStore struct {
	client  *Client
	prefix  string
	records *Records
	log     *slog.Logger
}

// NewReplicaStore returns the store of cluster's replica records. records
// seals what the store writes and opens what it reads: a record without a
// valid MAC is ignored (counted and logged by Records). Nil records means
// neither sealed nor checked. logger (nil: discard) receives bad records
// and failed revokes.
func NewReplicaStore(client *Client, cluster string, records *Records, logger *slog.Logger) (*ReplicaStore, error) {
	if client == nil {
		return nil, errors.New("replica store: client is required")
	}
	if err := ValidName("Cluster", cluster); err != nil {
		return nil, fmt.Errorf("replica store: %w", err)
	}
	return &ReplicaStore{client: client, prefix: ReplicasPrefix(cluster), records: records, log: orDiscard(logger)}, nil
}

// Prefix is ReplicasPrefix of the store's cluster.
func (s *ReplicaStore) Prefix() string { return s.prefix }

// Key is the etcd key of key hash's replica on node.
func (s *ReplicaStore) Key(hash uint64, node string) string { return replicaKey(s.prefix, hash, node) }

// Grant grants a lease of ttl, rounded up to whole seconds.
func (s *ReplicaStore) Grant(ctx context.Context, ttl time.Duration) (Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	g, err := s.client.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return Lease{}, fmt.Errorf("grant lease: %w", err)
	}
	return Lease{ID: int64(g.ID), TTL: time.Duration(g.TTL) * time.Second}, nil
}

// Register writes rec (its Key, Owner, Reason, Since and TTL) at the key
// of (rec.Hash, rec.Node) under lease, in a transaction that also checks
// fence and that no record exists there. On failure it revokes lease —
// ErrFenced, ErrReplicaExists, or an error of etcd after which etcd says
// the record is not there — except when etcd cannot tell whether the
// transaction committed: then the lease is left to expire, or its record
// to be adopted, rather than delete a replica that may be serving. A
// transaction that failed but committed all the same is a success.
func (s *ReplicaStore) Register(ctx context.Context, fence Fence, lease int64, rec Replica) error {
	key := s.Key(rec.Hash, rec.Node)
	val, err := json.Marshal(rec)
	if err != nil {
		s.revoke(ctx, lease)
		return fmt.Errorf("encode record: %w", err)
	}
	tctx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := s.client.Txn(tctx).
		If(fence.Cmp().cmp, clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(s.records.Seal(key, lease, val)), clientv3.WithLease(clientv3.LeaseID(lease)))).
		Else(clientv3.OpGet(fence.Key, clientv3.WithKeysOnly()), clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	cancel()
	if err != nil {
		// The transaction may have committed all the same.
		switch registered, known := s.registered(ctx, key, lease); {
		case registered:
			return nil
		case known:
			s.revoke(ctx, lease)
		}
		return fmt.Errorf("register %s: %w", key, err)
	}
	if !resp.Succeeded {
		s.revoke(ctx, lease)
		why := ErrReplicaExists
		if fk := resp.Responses[0].GetResponseRange().GetKvs(); len(fk) == 0 || fk[0].CreateRevision != fence.Rev {
			why = ErrFenced
		}
		return fmt.Errorf("register %s: %w", key, why)
	}
	return nil
}

// registered asks etcd whether key is registered under lease, after a
// transaction whose outcome is unknown. known is false if etcd could not
// tell. It asks even if ctx is done.
func (s *ReplicaStore) registered(ctx context.Context, key string, lease int64) (registered, known bool) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	resp, err := s.client.Get(gctx, key)
	if err != nil {
		return false, false
	}
	return len(resp.Kvs) == 1 && resp.Kvs[0].Lease == lease, true
}

// Revoke revokes lease, deleting the record under it, bounded, even if
// ctx is done. A lease already gone is not an error; if the revoke fails
// the lease simply expires.
func (s *ReplicaStore) Revoke(ctx context.Context, lease int64) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if _, err := s.client.Revoke(rctx, clientv3.LeaseID(lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("revoke lease %x: %w", lease, err)
	}
	return nil
}

// revoke is Revoke, logging a failure.
func (s *ReplicaStore) revoke(ctx context.Context, lease int64) {
	if err := s.Revoke(ctx, lease); err != nil {
		s.log.Debug("replicas: revoke failed; lease will expire", "lease", fmt.Sprintf("%x", lease), "err", err)
	}
}

// Renew renews lease once and returns its TTL from now; ErrLeaseNotFound
// if it is gone.
func (s *ReplicaStore) Renew(ctx context.Context, lease int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("renew lease %x: %w", lease, ErrLeaseNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("renew lease %x: %w", lease, err)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// TimeToLive returns how long lease has left: 0 or less when it has
// expired or was revoked (etcd may also say so with ErrLeaseNotFound).
func (s *ReplicaStore) TimeToLive(ctx context.Context, lease int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.TimeToLive(ctx, clientv3.LeaseID(lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("lease %x time to live: %w", lease, ErrLeaseNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("lease %x time to live: %w", lease, err)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// List reads every record. Records that do not open are left out (counted
// and logged by Records), and so are bad ones (logged at warn).
func (s *ReplicaStore) List(ctx context.Context) ([]Replica, error) {
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := s.client.Get(gctx, s.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("list replicas under %s: %w", s.prefix, err)
	}
	var out []Replica
	for _, kv := range resp.Kvs {
		if rec, ok := s.decode(kv); ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

// Watcher follows the records: onChange gets them by etcd key after the
// first load and after every change (see PrefixWatcher: the map is the
// watcher's own, valid only during the call).
func (s *ReplicaStore) Watcher(onChange func(map[string]Replica), logger *slog.Logger) *PrefixWatcher[Replica] {
	return &PrefixWatcher[Replica]{
		Client:   s.client,
		Prefix:   s.prefix,
		Decode:   s.decode,
		OnChange: onChange,
		Logger:   logger,
	}
}

// Follow runs Watcher(onChange, logger) until ctx is done: it loads the
// records, watches from the next revision, reloads after a compaction, and
// while etcd is unreachable retries with backoff, keeping the last view.
func (s *ReplicaStore) Follow(ctx context.Context, onChange func(map[string]Replica), logger *slog.Logger) {
	s.Watcher(onChange, logger).Run(ctx)
}

// decode reads a record; false drops one that does not open (logged once
// per key by Records) or is bad (logged here).
func (s *ReplicaStore) decode(kv *mvccpb.KeyValue) (Replica, bool) {
	rec, err := decodeReplica(s.prefix, s.records, kv)
	if errors.Is(err, errUnauthenticated) {
		return Replica{}, false
	}
	if err != nil {
		s.log.Warn("replicas: ignoring bad record", "key", string(kv.Key), "err", err)
		return Replica{}, false
	}
	return rec, true
}

// decodeReplica reads a record from its etcd key-value, if records opens it.
func decodeReplica(prefix string, records *Records, kv *mvccpb.KeyValue) (Replica, error) {
	h, node, ok := parseReplicaKey(prefix, string(kv.Key))
	if !ok {
		return Replica{}, fmt.Errorf("bad replica key %q", kv.Key)
	}
	raw, ok := records.Open(KindReplica, string(kv.Key), kv.Lease, kv.Value)
	if !ok {
		return Replica{}, fmt.Errorf("%s: %w", kv.Key, errUnauthenticated)
	}
	var rec Replica
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Replica{}, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	rec.Hash, rec.Node, rec.Lease = h, node, kv.Lease
	return rec, nil
}

// parseReplicaKey splits a record key under prefix into its hash and node.
func parseReplicaKey(prefix, key string) (uint64, string, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, "", false
	}
	hexHash, node, ok := strings.Cut(rest, "/")
	if !ok || len(hexHash) != 16 || node == "" || strings.Contains(node, "/") {
		return 0, "", false
	}
	h, err := strconv.ParseUint(hexHash, 16, 64)
	if err != nil {
		return 0, "", false
	}
	return h, node, true
}
