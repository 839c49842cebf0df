package purge

import "context"

// CompactTo deletes the oldest entries of the log until at most keep are
// left, and returns how many it deleted, so the live log is bounded by
// size as well as by age (Compact). Like Compact it never makes a follower
// skip a purge: a follower behind what etcd still holds flushes.
func (l *Log) CompactTo(ctx context.Context, keep int) (int, error) {
	return l.store.CompactTo(ctx, keep)
}
