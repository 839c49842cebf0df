package cluster

import (
	"context"
	"fmt"
	"log/slog"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/backoff"
)

// PrefixWatcher keeps a decoded view of every key under Prefix. Run loads
// the prefix, watches from the next revision, reloads after a compaction,
// and while etcd is unreachable retries with capped, jittered exponential
// backoff, keeping the last view: keys vanish only when etcd says they are
// gone.
type PrefixWatcher[T any] struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Prefix is the key prefix to follow. Required.
	Prefix string
	// Decode turns a key-value into a value; false leaves the key out of the
	// view, as if it were deleted. Required.
	Decode func(kv *mvccpb.KeyValue) (T, bool)
	// OnChange receives the view, by etcd key, after each (re)load and after
	// every watch response that carries events. It is called serially from
	// Run's goroutine; the map is the watcher's own, valid only during the
	// call, and must not be kept or modified. Required.
	OnChange func(view map[string]T)
	// Logger receives retries; nil discards them.
	Logger *slog.Logger
}

// Run follows the prefix until ctx is done.
func (w *PrefixWatcher[T]) Run(ctx context.Context) {
	log := orDiscard(w.Logger)
	var bo backoff.Backoff // defaults: 100ms doubling to 2s
	var view map[string]T
	var rev int64 // next revision to watch from; 0 means (re)load first
	for ctx.Err() == nil {
		if rev == 0 {
			loaded, next, err := w.load(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				d := bo.Next()
				log.Warn("watch: load failed; retrying", "prefix", w.Prefix, "in", d, "err", err)
				backoff.Sleep(ctx, d)
				continue
			}
			view, rev = loaded, next
			w.OnChange(view)
			bo.Reset()
		}
		next, progressed, err := w.watch(ctx, view, rev)
		rev = next
		if ctx.Err() != nil {
			return
		}
		if progressed {
			bo.Reset()
		}
		d := bo.Next()
		log.Warn("watch: watch ended; resuming", "prefix", w.Prefix, "rev", rev, "in", d, "err", err)
		backoff.Sleep(ctx, d)
	}
}

// load reads every key and returns the view with the revision to watch from.
func (w *PrefixWatcher[T]) load(ctx context.Context) (map[string]T, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := w.Client.Get(ctx, w.Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("load %s: %w", w.Prefix, err)
	}
	view := make(map[string]T, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		w.apply(view, mvccpb.PUT, kv)
	}
	return view, resp.Header.Revision + 1, nil
}

// watch applies changes from rev on to view, calling OnChange after each
// response with events. It returns the next revision to watch from (0 after
// a compaction, meaning reload) and whether any response arrived.
func (w *PrefixWatcher[T]) watch(ctx context.Context, view map[string]T, rev int64) (int64, bool, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	progressed := false
	for wr := range w.Client.Watch(wctx, w.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if wr.CompactRevision != 0 {
			return 0, progressed, fmt.Errorf("watch %s from %d: compacted at %d: %w", w.Prefix, rev, wr.CompactRevision, wr.Err())
		}
		if err := wr.Err(); err != nil {
			return rev, progressed, fmt.Errorf("watch %s from %d: %w", w.Prefix, rev, err)
		}
		progressed = true
		if h := wr.Header.Revision + 1; h > rev {
			rev = h
		}
		if len(wr.Events) == 0 {
			continue
		}
		for _, ev := range wr.Events {
			w.apply(view, ev.Type, ev.Kv)
		}
		w.OnChange(view)
	}
	if err := ctx.Err(); err != nil {
		return rev, progressed, err
	}
	return rev, progressed, fmt.Errorf("watch %s from %d: channel closed", w.Prefix, rev)
}

// apply records one put or delete in view.
func (w *PrefixWatcher[T]) apply(view map[string]T, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	if typ == mvccpb.DELETE {
		delete(view, key)
		return
	}
	v, ok := w.Decode(kv)
	if !ok {
		delete(view, key)
		return
	}
	view[key] = v
}
