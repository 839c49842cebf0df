package autopilot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// opTimeout bounds each etcd call a background loop makes, so a loop blocked
// on an unreachable etcd still notices its context and retries.
const opTimeout = 2 * time.Second

// ErrRunning is returned by a Run that is already running on the same value.
var ErrRunning = errors.New("autopilot: already running")

// ReplicasPrefix is where replica records live: Prefix(cluster)+"replicas/".
func ReplicasPrefix(clusterName string) string { return cluster.Prefix(clusterName) + "replicas/" }

// ReplicaKey is the key of the record of key hash's replica on node:
// ReplicasPrefix(cluster)+"<hash, 16 hex digits>/<node>".
func ReplicaKey(clusterName string, hash uint64, node string) string {
	return fmt.Sprintf("%s%016x/%s", ReplicasPrefix(clusterName), hash, node)
}

// Record is one replica's registration, stored as JSON at
// ReplicaKey(cluster, Hash, Node) under the replica's own lease: when the
// lease expires, etcd deletes the record and every node drops the replica.
type Record struct {
	Key    string        `json:"key"`    // the base cache key
	Hash   uint64        `json:"-"`      // from the etcd key, which is authoritative
	Node   string        `json:"-"`      // from the etcd key
	Owner  string        `json:"owner"`  // the key's owner when the replica was made, for people
	Reason string        `json:"reason"` // why the replica was made
	Since  time.Time     `json:"since"`  // when its lease was granted
	Lease  int64         `json:"-"`      // the lease ID, from the etcd key-value
	TTL    time.Duration `json:"ttl"`    // the lease's TTL as granted
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

// errUnauthenticated: a record without a valid MAC (see cluster.Records).
var errUnauthenticated = errors.New("not authenticated under the cluster secret")

// decodeRecord reads a record from its etcd key-value, if records opens it.
func decodeRecord(prefix string, records *cluster.Records, kv *mvccpb.KeyValue) (Record, error) {
	h, node, ok := parseReplicaKey(prefix, string(kv.Key))
	if !ok {
		return Record{}, fmt.Errorf("bad replica key %q", kv.Key)
	}
	raw, ok := records.Open(cluster.KindReplica, string(kv.Key), kv.Lease, kv.Value)
	if !ok {
		return Record{}, fmt.Errorf("%s: %w", kv.Key, errUnauthenticated)
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Record{}, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	rec.Hash, rec.Node, rec.Lease = h, node, kv.Lease
	return rec, nil
}

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Cluster names the cluster; records live under ReplicasPrefix(Cluster).
	// Required, without "/".
	Cluster string
	// OnChange, if not nil, receives the replica sets, key hash to replica
	// node IDs sorted, after the initial load and after every change. It is
	// called serially from Run's goroutine, so it should return quickly; the
	// map is new each call and the callee may keep it.
	OnChange func(sets map[uint64][]string)
	// Logger receives registry events; nil discards them.
	Logger *slog.Logger
	// Records opens the records: one without a valid MAC is ignored (and
	// counted and logged by Records). Nil means records are not checked.
	Records *cluster.Records
}

// Registry keeps a watched view of the replica records. Every node runs one;
// routing reads it through OnChange and the leader through Records.
type Registry struct {
	client   *clientv3.Client
	prefix   string
	onChange func(map[uint64][]string)
	log      *slog.Logger
	records  *cluster.Records

	snapshot atomic.Pointer[[]Record] // sorted by (Hash, Node)
	loaded   atomic.Bool
	running  atomic.Bool
}

// NewRegistry validates cfg and returns a Registry; call Run to follow etcd.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Client == nil {
		return nil, errors.New("replica registry: Client is required")
	}
	if err := cluster.ValidName("Cluster", cfg.Cluster); err != nil {
		return nil, fmt.Errorf("replica registry: %w", err)
	}
	return &Registry{
		client:   cfg.Client,
		prefix:   ReplicasPrefix(cfg.Cluster),
		onChange: cfg.OnChange,
		log:      orDiscard(cfg.Logger),
		records:  cfg.Records,
	}, nil
}

// orDiscard is l, or a logger that drops everything when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Records returns the last view of the replica records, sorted by (Hash,
// Node). It never blocks; the slice is shared and must not be modified.
func (r *Registry) Records() []Record {
	if p := r.snapshot.Load(); p != nil {
		return *p
	}
	return nil
}

// Loaded reports whether the records have been loaded at least once.
func (r *Registry) Loaded() bool { return r.loaded.Load() }

// Run loads the records and follows the prefix until ctx is done, then
// returns nil. It resumes the watch from the last revision seen, reloads
// after a compaction, and while etcd is unreachable retries with capped,
// jittered exponential backoff, keeping the last view: records vanish only
// when etcd says they are gone.
func (r *Registry) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("replica registry %s: %w", r.prefix, ErrRunning)
	}
	defer r.running.Store(false)

	w := cluster.PrefixWatcher[Record]{
		Client: r.client,
		Prefix: r.prefix,
		Decode: r.decode,
		OnChange: func(recs map[string]Record) {
			r.publish(recs)
			r.loaded.Store(true)
		},
		Logger: r.log,
	}
	w.Run(ctx)
	return nil
}

// decode reads a record; false drops a bad one.
func (r *Registry) decode(kv *mvccpb.KeyValue) (Record, bool) {
	rec, err := decodeRecord(r.prefix, r.records, kv)
	if errors.Is(err, errUnauthenticated) {
		return Record{}, false // logged once per key by Records
	}
	if err != nil {
		r.log.Warn("replica registry: ignoring bad record", "key", string(kv.Key), "err", err)
		return Record{}, false
	}
	return rec, true
}

// publish stores a sorted snapshot of recs and calls OnChange.
func (r *Registry) publish(recs map[string]Record) {
	snap := make([]Record, 0, len(recs))
	for _, rec := range recs {
		snap = append(snap, rec)
	}
	slices.SortFunc(snap, compareRecords)
	r.snapshot.Store(&snap)
	if r.onChange == nil {
		return
	}
	sets := make(map[uint64][]string)
	for _, rec := range snap {
		sets[rec.Hash] = append(sets[rec.Hash], rec.Node) // sorted: snap is
	}
	r.onChange(sets)
}

func compareRecords(a, b Record) int {
	if c := cmp.Compare(a.Hash, b.Hash); c != 0 {
		return c
	}
	return cmp.Compare(a.Node, b.Node)
}
