package purge

import (
	"context"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// Polling pace of WaitApplied: the first re-check comes after waitPollMin,
// later ones back off to waitPollMax, which bounds what waiting adds to a
// purge's confirmation.
const (
	waitPollMin = time.Millisecond
	waitPollMax = 10 * time.Millisecond
)

// WaitApplied waits until every member listed by members has published a
// PurgeRev of at least rev, or until ctx is done. It returns the IDs of the
// members that have applied rev and of those that have not (both sorted as
// members lists them, which for cluster.Membership is by ID); pending is
// empty when every member applied it.
//
// A listed member counts whether or not it is draining: a draining node
// still holds and may serve cached objects. A crashed node stays listed (and
// pending) until its lease expires.
//
// members is polled, so it should be cheap: cluster.Membership.Members, a
// snapshot kept current by a watch on the member records, is the intended
// source. It may reach this node a few milliseconds after a record changed;
// that can only delay confirmation, never confirm early, except for a node
// that joined within those milliseconds (which started with an empty cache).
func WaitApplied(ctx context.Context, rev int64, members func() []cluster.Member) (applied, pending []string) {
	delay := waitPollMin
	var t *time.Timer
	for {
		applied, pending = splitApplied(members(), rev)
		if len(pending) == 0 {
			return applied, pending
		}
		if t == nil {
			t = time.NewTimer(delay)
			defer t.Stop()
		} else {
			t.Reset(delay)
		}
		select {
		case <-ctx.Done():
			return applied, pending
		case <-t.C:
		}
		delay = min(2*delay, waitPollMax)
	}
}

// splitApplied separates the members that have applied rev from the others.
// Both results are non-nil, so they encode as JSON arrays.
func splitApplied(members []cluster.Member, rev int64) (applied, pending []string) {
	applied, pending = []string{}, []string{}
	for _, m := range members {
		if m.PurgeRev >= rev {
			applied = append(applied, m.ID)
		} else {
			pending = append(pending, m.ID)
		}
	}
	return applied, pending
}
