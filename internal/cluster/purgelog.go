package cluster

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// PurgePrefix is where the purge log lives: Prefix(cluster)+"purge/".
func PurgePrefix(cluster string) string { return Prefix(cluster) + "purge/" }

// purgeReadTimeout bounds a follower's read of the current revision, so
// that with etcd unreachable its loop logs and retries instead of hanging
// silently.
const purgeReadTimeout = 5 * time.Second

// PurgeLog is the ordered log of a cluster's purges. An entry is a record
// (JSON, the purge package's) sealed with the cluster secret under a key
// purge/<20-digit append time in Unix nanoseconds>-<16 random hex digits>,
// so that old entries go with one range delete. The key's name plays no
// part in ordering: followers order by revision, and read the history of
// deleted entries until etcd compacts it.
//
// Append, the compactions and Latest are bounded by their ctx alone.
type PurgeLog struct {
	client  *Client
	prefix  string   // PurgePrefix(cluster)
	records *Records // seals entries and opens them; nil: neither
}

// NewPurgeLog returns cluster's purge log, its entries sealed and opened
// by records (nil: neither), so that followers ignore entries the cluster
// did not write.
func NewPurgeLog(client *Client, cluster string, records *Records) *PurgeLog {
	return &PurgeLog{client: client, prefix: PurgePrefix(cluster), records: records}
}

// Prefix is PurgePrefix of the log's cluster.
func (l *PurgeLog) Prefix() string { return l.prefix }

// Append commits record, appended at at, and returns the revision that
// committed it, once etcd has.
func (l *PurgeLog) Append(ctx context.Context, at time.Time, record []byte) (int64, error) {
	key := fmt.Sprintf("%s%020d-%016x", l.prefix, at.UnixNano(), rand.Uint64())
	resp, err := l.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(l.records.Seal(key, 0, record)))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("append to %s: %w", l.prefix, err)
	}
	if !resp.Succeeded {
		// 64 random bits under a nanosecond timestamp: never in practice.
		return 0, fmt.Errorf("append: key %s already exists", key)
	}
	return resp.Header.Revision, nil
}

// CompactBefore deletes the keys of the entries appended before cutoff
// and returns how many it deleted. Deleting keys never makes a follower
// skip a purge (see PurgeLog); it only bounds the size of the live log.
func (l *PurgeLog) CompactBefore(ctx context.Context, cutoff time.Time) (int, error) {
	ns := cutoff.UnixNano()
	if ns < 0 {
		return 0, nil
	}
	end := fmt.Sprintf("%s%020d", l.prefix, ns)
	resp, err := l.client.Delete(ctx, l.prefix, clientv3.WithRange(end))
	if err != nil {
		return 0, fmt.Errorf("compact purge log %s before %s: %w", l.prefix, time.Unix(0, ns).UTC(), err)
	}
	return int(resp.Deleted), nil
}

// CompactTo deletes the oldest entries until at most keep are left, and
// returns how many it deleted.
func (l *PurgeLog) CompactTo(ctx context.Context, keep int) (int, error) {
	if keep < 0 {
		return 0, fmt.Errorf("compact purge log: negative size %d", keep)
	}
	resp, err := l.client.Get(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("compact purge log %s: count: %w", l.prefix, err)
	}
	excess := resp.Count - int64(keep)
	if excess <= 0 {
		return 0, nil
	}
	// Keys sort by their append time: the first excess are the oldest.
	// Find the first key to keep, and delete everything before it.
	first, err := l.client.Get(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(excess+1))
	if err != nil {
		return 0, fmt.Errorf("compact purge log %s: list: %w", l.prefix, err)
	}
	end := clientv3.GetPrefixRangeEnd(l.prefix)
	if int64(len(first.Kvs)) > excess {
		end = string(first.Kvs[excess].Key)
	}
	del, err := l.client.Delete(ctx, l.prefix, clientv3.WithRange(end))
	if err != nil {
		return 0, fmt.Errorf("compact purge log %s to %d entries: %w", l.prefix, keep, err)
	}
	return int(del.Deleted), nil
}

// Latest returns the revision of the newest entry still in the log (0
// when the log is empty).
func (l *PurgeLog) Latest(ctx context.Context) (int64, error) {
	resp, err := l.client.Get(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return 0, fmt.Errorf("read newest purge under %s: %w", l.prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return resp.Kvs[0].ModRevision, nil
}

// Reader returns a reader of the log for one follower.
func (l *PurgeLog) Reader() *PurgeReader {
	return &PurgeReader{log: l, stream: strconv.FormatUint(rand.Uint64(), 36)}
}

// PurgeReader reads the log for one follower. Its calls go on a gRPC
// stream of its own, so progress requests concern only its watch, and
// require an etcd leader, so an etcd member cut off from its cluster
// cannot keep confirming a stale position.
type PurgeReader struct {
	log    *PurgeLog
	stream string // keeps this reader's watch on its own gRPC stream
}

// ctx puts ctx on the reader's stream, requiring a leader.
func (r *PurgeReader) ctx(ctx context.Context) context.Context {
	return clientv3.WithRequireLeader(metadata.AppendToOutgoingContext(ctx, "crowdpilot-purge-follower", r.stream))
}

// Revision reads etcd's current revision with a linearizable read,
// bounded by purgeReadTimeout (5s).
func (r *PurgeReader) Revision(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(r.ctx(ctx), purgeReadTimeout)
	defer cancel()
	resp, err := r.log.client.Get(ctx, r.log.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read revision of %s: %w", r.log.prefix, err)
	}
	return resp.Header.Revision, nil
}

// RequestProgress asks etcd for a progress notification on the reader's
// watch; it arrives there, or not.
func (r *PurgeReader) RequestProgress(ctx context.Context) error {
	return r.log.client.RequestProgress(r.ctx(ctx))
}

// Watch opens a watch of the log from revision from, with progress
// notifications, and returns once etcd's stream is up. The watch lasts
// until ctx is done (cancel it to close the watch) or etcd ends it.
func (r *PurgeReader) Watch(ctx context.Context, from int64) *PurgeWatch {
	return &PurgeWatch{
		ch:      r.log.client.Watch(r.ctx(ctx), r.log.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify()),
		records: r.log.records,
	}
}

// PurgeWatch is an open watch of the purge log.
type PurgeWatch struct {
	ch      clientv3.WatchChan
	records *Records
}

// PurgeChanges is one response of a watch of the log.
type PurgeChanges struct {
	// Revision is the response's revision: etcd has delivered every
	// change up to it.
	Revision int64
	// CompactRevision, when not 0, says etcd compacted its history past
	// the watch's position: changes may be lost, and the watch ends.
	CompactRevision int64
	// Err is why the watch failed, if it did.
	Err error
	// Progress marks a progress notification, without events.
	Progress bool
	// Events are the changes, in revision order.
	Events []PurgeEvent
}

// PurgeEvent is one change of the log: an entry appended, or a key
// deleted by a compaction.
type PurgeEvent struct {
	Rev     int64 // the revision of the change
	Key     string
	Deleted bool // a compaction deleting an old key

	lease   int64
	value   []byte
	records *Records
}

// Open returns the record an appended entry holds, if it opens under the
// cluster secret; one that does not is counted and logged (once per key).
func (e PurgeEvent) Open() ([]byte, bool) {
	return e.records.Open(KindPurge, e.Key, e.lease, e.value)
}

// Changes yields the watch's responses until it ends.
func (w *PurgeWatch) Changes() iter.Seq[PurgeChanges] {
	return func(yield func(PurgeChanges) bool) {
		for resp := range w.ch {
			ch := PurgeChanges{
				Revision:        resp.Header.Revision,
				CompactRevision: resp.CompactRevision,
				Err:             resp.Err(),
				Progress:        resp.IsProgressNotify(),
			}
			if len(resp.Events) > 0 {
				ch.Events = make([]PurgeEvent, len(resp.Events))
				for i, ev := range resp.Events {
					ch.Events[i] = PurgeEvent{
						Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key), Deleted: ev.Type == mvccpb.DELETE,
						lease: ev.Kv.Lease, value: ev.Kv.Value, records: w.records,
					}
				}
			}
			if !yield(ch) {
				return
			}
		}
	}
}
