package purge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// stamp is one follower applying one entry.
type stamp struct {
	rev int64
	at  time.Time
}

// stampApplier reports every application on a channel.
type stampApplier struct{ ch chan stamp }

func (a stampApplier) ApplyPurge(e Entry) { a.ch <- stamp{e.Rev, time.Now()} }
func (a stampApplier) Flush()             {}

// propagation appends n purges one after another to a log followed by three
// followers (each with its own etcd client, like three nodes) and returns,
// per purge, the time from just before the commit until the last follower
// applied it.
func propagation(tb testing.TB, n int) []time.Duration {
	te := startEtcd(tb)
	l := NewLog(te.client(), testCluster, nil)
	ch := make(chan stamp, 3*64)
	for range 3 {
		f, _ := startFollower(tb, FollowerConfig{Client: te.client(), Applier: stampApplier{ch}})
		testwait.Eventually(tb, testTimeout, "follower start", func() bool { return f.Applied() > 0 })
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		e, err := l.Append(context.Background(), Request{Tag: fmt.Sprintf("t%d", i)})
		if err != nil {
			tb.Fatal(err)
		}
		var last time.Time
		for range 3 {
			select {
			case s := <-ch:
				if s.rev != e.Rev {
					tb.Fatalf("applied rev %d while waiting for %d", s.rev, e.Rev)
				}
				last = s.at
			case <-time.After(testTimeout):
				tb.Fatalf("purge %d not applied on all followers", e.Rev)
			}
		}
		lat = append(lat, last.Sub(start))
	}
	return lat
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// TestPropagationReachesEveryFollower: each of 200 purges, appended one
// after another, is applied by all 3 followers, in order, before the next
// (propagation fails otherwise). How fast is BenchmarkPropagation's to say,
// not a test's: a wall-clock bound here fails on a busy machine. The
// latencies are logged.
func TestPropagationReachesEveryFollower(t *testing.T) {
	lat := propagation(t, 200)
	if len(lat) != 200 {
		t.Fatalf("%d purges measured, want 200", len(lat))
	}
	t.Logf("commit -> applied on 3 followers over %d purges: p50 %s p99 %s max %s", len(lat), quantile(lat, .5), quantile(lat, .99), slices.Max(lat))
}

// BenchmarkPropagation: go test -run '^$' -bench Propagation -benchtime 2000x ./internal/purge/
func BenchmarkPropagation(b *testing.B) {
	lat := propagation(b, b.N)
	b.ReportMetric(float64(quantile(lat, .5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(quantile(lat, .99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "max-ms")
}

// BenchmarkConfirmedPurge measures POST /api/v1/purge with "wait" until every
// one of 3 followers has applied the purge and published it in its member
// record: what an origin waits for.
func BenchmarkConfirmedPurge(b *testing.B) {
	te := startEtcd(b)
	c := te.client()
	members := etcdMembers(b, c)
	for i := range 3 {
		startFollower(b, FollowerConfig{Client: te.client(), Applier: &discard{}, OnApplied: publishTo(b, te.client(), fmt.Sprintf("n%d", i))})
	}
	testwait.Eventually(b, testTimeout, "3 members", func() bool { return len(members()) == 3 })
	h := NewHandler(NewLog(c, testCluster, nil), members, nil)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		req := httptest.NewRequest(http.MethodPost, "/api/v1/purge", strings.NewReader(fmt.Sprintf(`{"tag":"t%d","wait":"10s"}`, i)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("purge %d: %d %s", i, rec.Code, rec.Body)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(quantile(lat, .5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(quantile(lat, .99).Microseconds())/1000, "p99-ms")
}

type discard struct{}

func (discard) ApplyPurge(Entry) {}
func (discard) Flush()           {}
