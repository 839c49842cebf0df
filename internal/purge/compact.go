package purge

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// CompactTo deletes the oldest entries of the log until at most keep are
// left, and returns how many it deleted, so the live log is bounded by
// size as well as by age (Compact). Like Compact it never makes a follower
// skip a purge: a follower behind what etcd still holds flushes.
func (l *Log) CompactTo(ctx context.Context, keep int) (int, error) {
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
