package purge

import "context"

// Latest returns the revision of the newest purge still in the log (0 when
// the log is empty). A node that starts after it never applied it, but a
// peer it fills from must have: the node sends this revision with its
// peer fills, so a lagging peer cannot hand it a copy the purge removed.
func (l *Log) Latest(ctx context.Context) (int64, error) { return l.store.Latest(ctx) }
