package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// Entry is one committed purge.
type Entry struct {
	// Rev is the etcd revision that committed the purge; entries are applied
	// in Rev order.
	Rev   int64     `json:"rev"`
	Kind  Kind      `json:"kind"`
	Value string    `json:"value,omitempty"` // empty for KindAll
	Soft  bool      `json:"soft,omitempty"`
	At    time.Time `json:"at"` // the appender's clock just before the commit
}

// record is the value stored under a log key. The revision is not stored: it
// is the key's ModRevision.
type record struct {
	Kind  Kind      `json:"kind"`
	Value string    `json:"value,omitempty"`
	Soft  bool      `json:"soft,omitempty"`
	At    time.Time `json:"at"`
}

// Log appends purges to the ordered log of one cluster (cluster.PurgeLog:
// keys named by the append time, so that Compact can drop everything older
// than an age with one range delete; followers order by revision).
type Log struct {
	store *cluster.PurgeLog
	now   func() time.Time // clock for At and Compact; tests replace it
}

// LogPrefix is the etcd prefix of cluster's invalidation log.
func LogPrefix(clusterName string) string { return cluster.PurgePrefix(clusterName) }

// NewLog returns the log of cluster, stored through client, its entries
// sealed by records (nil: not sealed) so that followers opening them with
// the same secret ignore entries the cluster did not write.
func NewLog(client *cluster.Client, clusterName string, records *cluster.Records) *Log {
	return &Log{store: cluster.NewPurgeLog(client, clusterName, records), now: time.Now}
}

// Append validates r and commits it to the log. It returns once etcd has
// committed the entry; Entry.Rev is the committing revision.
func (l *Log) Append(ctx context.Context, r Request) (Entry, error) {
	if err := r.Validate(); err != nil {
		return Entry{}, err
	}
	kind, value := r.target()
	rec := record{Kind: kind, Value: value, Soft: r.Soft, At: l.now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return Entry{}, fmt.Errorf("purge %s %q: encode: %w", kind, value, err)
	}
	rev, err := l.store.Append(ctx, rec.At, b)
	if err != nil {
		return Entry{}, fmt.Errorf("purge %s %q: %w", kind, value, err)
	}
	return Entry{Rev: rev, Kind: kind, Value: value, Soft: r.Soft, At: rec.At}, nil
}

// Compact deletes the log keys of entries appended more than olderThan ago
// and returns how many it deleted.
//
// Deleting keys never makes a follower skip a purge: followers replay the log
// from etcd's revision history, which still holds deleted entries until etcd
// itself compacts that history, and a follower whose position etcd has
// compacted flushes its cache. Compact only bounds the size of the live log.
func (l *Log) Compact(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("compact purge log: negative age %s", olderThan)
	}
	return l.store.CompactBefore(ctx, l.now().Add(-olderThan))
}

// errBadRecord marks a log value this code cannot read.
var errBadRecord = errors.New("unreadable purge log entry")

// decodeEntry turns a log key's value and revision into an Entry.
func decodeEntry(rev int64, value []byte) (Entry, error) {
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		return Entry{}, fmt.Errorf("%w at rev %d: %w", errBadRecord, rev, err)
	}
	switch rec.Kind {
	case KindKey, KindTag, KindPrefix:
		if rec.Value == "" {
			return Entry{}, fmt.Errorf("%w at rev %d: kind %q without a value", errBadRecord, rev, rec.Kind)
		}
	case KindAll:
	default:
		return Entry{}, fmt.Errorf("%w at rev %d: unknown kind %q", errBadRecord, rev, rec.Kind)
	}
	return Entry{Rev: rev, Kind: rec.Kind, Value: rec.Value, Soft: rec.Soft, At: rec.At}, nil
}
