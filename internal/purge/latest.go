package purge

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Latest returns the revision of the newest purge still in the log (0 when
// the log is empty). A node that starts after it never applied it, but a
// peer it fills from must have: the node sends this revision with its
// peer fills, so a lagging peer cannot hand it a copy the purge removed.
func (l *Log) Latest(ctx context.Context) (int64, error) {
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
