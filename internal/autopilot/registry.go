package autopilot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// ErrRunning is returned by a Run that is already running on the same value.
var ErrRunning = errors.New("autopilot: already running")

// ReplicasPrefix is where replica records live: cluster.ReplicasPrefix.
func ReplicasPrefix(clusterName string) string { return cluster.ReplicasPrefix(clusterName) }

// ReplicaKey is the key of the record of key hash's replica on node:
// cluster.ReplicaKey.
func ReplicaKey(clusterName string, hash uint64, node string) string {
	return cluster.ReplicaKey(clusterName, hash, node)
}

// Record is one replica's registration (see cluster.Replica).
type Record = cluster.Replica

// ReplicaWatcher follows the replica records; *cluster.ReplicaStore is one.
// Follow calls onChange with the records by etcd key after the first load
// and after every change, serially, until ctx is done; the map is valid
// only during the call. It keeps the last view while etcd is unreachable.
type ReplicaWatcher interface {
	Follow(ctx context.Context, onChange func(map[string]Record), logger *slog.Logger)
}

var _ ReplicaWatcher = (*cluster.ReplicaStore)(nil)

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Store holds the replica records (cluster.NewReplicaStore, which
	// opens them: a record without a valid MAC is ignored). Required.
	Store ReplicaWatcher
	// OnChange, if not nil, receives the replica sets, key hash to replica
	// node IDs sorted, after the initial load and after every change. It is
	// called serially from Run's goroutine, so it should return quickly; the
	// map is new each call and the callee may keep it.
	OnChange func(sets map[uint64][]string)
	// Logger receives registry events; nil discards them.
	Logger *slog.Logger
}

// Registry keeps a watched view of the replica records. Every node runs one;
// routing reads it through OnChange and the leader through Records.
type Registry struct {
	store    ReplicaWatcher
	onChange func(map[uint64][]string)
	log      *slog.Logger

	snapshot atomic.Pointer[[]Record] // sorted by (Hash, Node)
	loaded   atomic.Bool
	running  atomic.Bool
}

// NewRegistry validates cfg and returns a Registry; call Run to follow etcd.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Store == nil {
		return nil, errors.New("replica registry: Store is required")
	}
	return &Registry{
		store:    cfg.Store,
		onChange: cfg.OnChange,
		log:      orDiscard(cfg.Logger),
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
		return fmt.Errorf("replica registry: %w", ErrRunning)
	}
	defer r.running.Store(false)

	r.store.Follow(ctx, func(recs map[string]Record) {
		r.publish(recs)
		r.loaded.Store(true)
	}, r.log)
	return nil
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
