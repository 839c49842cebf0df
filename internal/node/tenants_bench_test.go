package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// BenchmarkTenantBDuringACrowd measures tenant b's latency on a 6-node
// in-process cluster (real etcd, loopback HTTP) while tenant a has a crowd
// or not: one op is one GET of a cached b object, sent by one closed-loop
// client through the nodes in turn; the crowd is 32 closed-loop clients on
// a's 1,000 cached objects through every node. Sizes are fixed by hand
// (the capacity manager sees no CPU in one process), a at 2 nodes or at
// all 6, b at 2. Reported: b's p50 and p99 (b-p50-ms, b-p99-ms) and a's
// answered requests per second (a-req/s). Every node shares this
// process's CPU, so the figures compare the three cases on one machine;
// they are not a node's latency under a CPU quota (bench/testbed.sh
// --tenants measures that).
func BenchmarkTenantBDuringACrowd(b *testing.B) {
	for _, bc := range []struct {
		name  string
		crowd bool
		sizeA int
	}{
		{"quiet", false, 2},
		{"crowd/a=2", true, 2},
		{"crowd/a=6", true, 6},
	} {
		b.Run(bc.name, func(b *testing.B) { benchTenantB(b, bc.crowd, bc.sizeA) })
	}
}

func benchTenantB(b *testing.B, crowd bool, sizeA int) {
	const objectsA, objectsB, crowdClients = 1000, 200, 32
	decl, err := tenant.Parse([]byte("resolve: [host]\ntenants:\n  a: {hosts: [a.example], min: 2}\n  b: {hosts: [b.example], min: 2}\n"))
	if err != nil {
		b.Fatal(err)
	}
	tc := newTestCluster(b, 6, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		c.Tenants, c.DisableAutopilot = decl, true
		c.KeyHost, c.AllowedHosts = true, []string{"a.example", "b.example"}
	})
	if sizeA != 2 {
		if code, body := tc.call(http.MethodPut, tc.admin(0, "/api/v1/tenants/a"), "secret", fmt.Sprintf(`{"size": %d, "hold": true}`, sizeA)); code != http.StatusOK {
			b.Fatalf("PUT size %d = %d %s", sizeA, code, body)
		}
	}
	tc.waitTenantSet("a", sizeA, tc.nodes...)
	tc.waitTenantSet("b", 2, tc.nodes...)
	get := func(ctx context.Context, host string, via, obj int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, tc.url(via%6, fmt.Sprintf("/%s/%d", host[:1], obj)), nil)
		if err != nil {
			return err
		}
		req.Host = host
		resp, err := tc.client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /%d via n%d: status %d", host, obj, via%6, resp.StatusCode)
		}
		return nil
	}
	ctx := b.Context()
	for i := range objectsA {
		if err := get(ctx, "a.example", i, i); err != nil {
			b.Fatal(err)
		}
	}
	for i := range objectsB {
		if err := get(ctx, "b.example", i, i); err != nil {
			b.Fatal(err)
		}
	}
	var aDone, aFailed atomic.Int64
	var runner *testwait.Runner
	if crowd {
		runner = testwait.Go(b, func(ctx context.Context) error {
			var wg sync.WaitGroup
			for w := range crowdClients {
				wg.Go(func() {
					for i := w; ctx.Err() == nil; i += crowdClients {
						if err := get(ctx, "a.example", i, (i*7919)%objectsA); err != nil {
							if ctx.Err() == nil {
								aFailed.Add(1)
							}
							continue
						}
						aDone.Add(1)
					}
				})
			}
			wg.Wait()
			return nil
		})
	}
	h := hdr.New(1, int64(time.Minute/time.Microsecond), 3)
	failed := 0
	start := time.Now()
	a0 := aDone.Load()
	i := 0
	for b.Loop() {
		t0 := time.Now()
		if err := get(ctx, "b.example", i, i%objectsB); err != nil {
			failed++
		}
		h.RecordValue(time.Since(t0).Microseconds())
		i++
	}
	elapsed := time.Since(start)
	aRate := float64(aDone.Load()-a0) / elapsed.Seconds()
	if runner != nil {
		runner.Stop(b)
	}
	if failed > 0 || aFailed.Load() > 0 {
		b.Errorf("%d of b's requests and %d of a's failed", failed, aFailed.Load())
	}
	b.ReportMetric(float64(h.ValueAtQuantile(50))/1000, "b-p50-ms")
	b.ReportMetric(float64(h.ValueAtQuantile(99))/1000, "b-p99-ms")
	b.ReportMetric(aRate, "a-req/s")
}
