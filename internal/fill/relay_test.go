package fill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// bigOrigin serves bodies larger than the tests' MaxObjectBytes: size
// bytes of a pattern, the first part bytes at once and the rest only
// after release is closed (nil: at once).
type bigOrigin struct {
	size, part int
	cc         string // Cache-Control; "" is public, max-age=60
	noLength   bool   // chunked: the fill learns the size by reading
	release    chan struct{}
	fetches    atomic.Int64
}

func (o *bigOrigin) body() []byte {
	b := make([]byte, o.size)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func (o *bigOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.fetches.Add(1)
	cc := o.cc
	if cc == "" {
		cc = "public, max-age=60"
	}
	w.Header().Set("Cache-Control", cc)
	w.Header().Set("ETag", `"big"`)
	if !o.noLength {
		w.Header().Set("Content-Length", strconv.Itoa(o.size))
	}
	b := o.body()
	w.Write(b[:o.part])
	w.(http.Flusher).Flush()
	if o.release != nil {
		select {
		case <-o.release:
		case <-r.Context().Done():
			return
		}
	}
	w.Write(b[o.part:])
}

func newBigGroup(t *testing.T, o *bigOrigin, tweak func(*Config)) *Group {
	t.Helper()
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	g, _ := newGroup(t, srv.URL, func(c *Config) {
		c.MaxObjectBytes = 64 << 10
		c.Timeout = 10 * time.Second
		if tweak != nil {
			tweak(c)
		}
	})
	return g
}

// readStream reads a Fetch result's relayed body.
func readStream(res Result, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if res.Stream == nil {
		return nil, fmt.Errorf("no stream (entry %v)", res.Entry != nil)
	}
	defer res.Stream.Body.Close()
	return io.ReadAll(res.Stream.Body)
}

// TestRelayOneFetchForConcurrentCallers (issue 10, finding 9): callers
// that ask for an object too large to store while it is being fetched
// share one upstream request, whether the origin says how large it is or
// the fill finds out by reading, and each reads the whole body.
func TestRelayOneFetchForConcurrentCallers(t *testing.T) {
	for _, noLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("noLength=%v", noLength), func(t *testing.T) {
			o := &bigOrigin{size: 3 << 20, part: 100 << 10, noLength: noLength, release: make(chan struct{})}
			g := newBigGroup(t, o, nil)
			const n = 12
			bodies := make([][]byte, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					r, base := get("/big")
					bodies[i], errs[i] = readStream(g.Fetch(context.Background(), r, base, nil, nil))
				})
			}
			// Every caller is reading the one relay before the origin sends
			// the rest of the body.
			waitUntil(t, func() bool { return value(g.m.relayReading) == n })
			close(o.release)
			wg.Wait()
			want := o.body()
			for i := range n {
				if errs[i] != nil || !bytes.Equal(bodies[i], want) {
					t.Errorf("caller %d: %d bytes, %v; want the %d-byte body", i, len(bodies[i]), errs[i], len(want))
				}
			}
			if f := o.fetches.Load(); f != 1 {
				t.Errorf("origin fetches = %d, want 1", f)
			}
			if v := value(g.m.relays); v != 1 {
				t.Errorf("relays = %v, want 1", v)
			}
			waitUntil(t, func() bool { return value(g.m.relayReading) == 0 && g.limit.Inflight() == 0 })
		})
	}
}

// TestRelayLateCallerJoinsWhileHeadHeld: a request that comes after the
// fetch but while the relay still holds the first byte joins it; once the
// readers have moved past the head, the next request starts a new relay.
func TestRelayLateCallerJoinsWhileHeadHeld(t *testing.T) {
	o := &bigOrigin{size: 1 << 20, part: 1 << 20}
	g := newBigGroup(t, o, func(c *Config) { c.RelayWindow = 128 << 10 })
	r, base := get("/big")
	first, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || first.Stream == nil {
		t.Fatalf("first fetch: %v %+v", err, first)
	}
	r2, _ := get("/big")
	late, err := g.Fetch(context.Background(), r2, base, nil, nil)
	if err != nil || late.Stream == nil {
		t.Fatalf("late fetch: %v %+v", err, late)
	}
	if !late.Collapsed {
		t.Error("the late caller's result is not marked collapsed")
	}
	if f := o.fetches.Load(); f != 1 {
		t.Fatalf("origin fetches after the late caller = %d, want 1 (it joins the relay)", f)
	}
	want := o.body()
	var wg sync.WaitGroup
	for _, res := range []Result{first, late} {
		wg.Go(func() {
			if b, err := readStream(res, nil); err != nil || !bytes.Equal(b, want) {
				t.Errorf("read %d bytes, %v", len(b), err)
			}
		})
	}
	wg.Wait()
	r3, _ := get("/big")
	if b, err := readStream(g.Fetch(context.Background(), r3, base, nil, nil)); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("after the relay: %d bytes, %v", len(b), err)
	}
	if f := o.fetches.Load(); f != 2 {
		t.Errorf("origin fetches = %d, want 2 (the relay had moved past its head)", f)
	}
}

// TestRelayCutsAReaderThatHoldsTheWindow: a reader that stops reading
// holds the others for at most RelayStall; then it is cut (its read
// fails, counted as shed relay_lag) and the others finish.
func TestRelayCutsAReaderThatHoldsTheWindow(t *testing.T) {
	o := &bigOrigin{size: 1 << 20, part: 1 << 20}
	var lag atomic.Int64
	g := newBigGroup(t, o, func(c *Config) {
		c.RelayWindow = 128 << 10
		c.RelayStall = 100 * time.Millisecond
		c.Shed = func(reason string) {
			if reason == "relay_lag" {
				lag.Add(1)
			}
		}
	})
	r, base := get("/big")
	fast, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || fast.Stream == nil {
		t.Fatalf("fetch: %v", err)
	}
	slow, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || slow.Stream == nil {
		t.Fatalf("fetch: %v", err)
	}
	defer slow.Stream.Body.Close()
	if b, err := readStream(fast, nil); err != nil || !bytes.Equal(b, o.body()) {
		t.Fatalf("fast reader: %d bytes, %v", len(b), err)
	}
	if _, err := io.ReadAll(slow.Stream.Body); !errors.Is(err, errRelayLag) {
		t.Errorf("stalled reader: %v, want errRelayLag", err)
	}
	if lag.Load() != 1 {
		t.Errorf("relay_lag shed %d times, want 1", lag.Load())
	}
	if f := o.fetches.Load(); f != 1 {
		t.Errorf("origin fetches = %d, want 1", f)
	}
}

// TestRelayKeepsPrivateResponsesApart: a too-large response no shared
// cache may store is relayed only to the request that fetched it; every
// other caller gets a fetch of its own.
func TestRelayKeepsPrivateResponsesApart(t *testing.T) {
	o := &bigOrigin{size: 200 << 10, part: 200 << 10, cc: "private, max-age=60", release: make(chan struct{})}
	g := newBigGroup(t, o, nil)
	const n = 4
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, base := get("/mine")
			if b, err := readStream(g.Fetch(context.Background(), r, base, nil, nil)); err != nil || len(b) != o.size {
				t.Errorf("read %d bytes, %v", len(b), err)
			}
		})
	}
	waitUntil(t, func() bool { return o.fetches.Load() > 0 })
	close(o.release)
	wg.Wait()
	if f := o.fetches.Load(); f != n {
		t.Errorf("origin fetches = %d, want %d (one per caller)", f, n)
	}
}

// TestRelayDoesNotAnswerRangesOrConditionals: a relay of the whole body
// cannot answer a Range or a conditional: such a caller gets ErrTooLarge
// (the node passes it through), and HEAD gets the header without a body.
func TestRelayDoesNotAnswerRangesOrConditionals(t *testing.T) {
	o := &bigOrigin{size: 200 << 10, part: 200 << 10}
	g := newBigGroup(t, o, nil)
	for _, h := range []string{"Range", "If-None-Match", "If-Modified-Since", "If-Range"} {
		r, base := get("/big")
		r.Header.Set(h, "x")
		if _, err := g.Fetch(context.Background(), r, base, nil, nil); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: err = %v, want ErrTooLarge", h, err)
		}
	}
	r, base := get("/big")
	r.Method = http.MethodHead
	res, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || res.Stream == nil || res.Stream.Body != http.NoBody || res.Stream.Header.Get("Content-Length") != strconv.Itoa(o.size) {
		t.Fatalf("HEAD: %v %+v", err, res.Stream)
	}
}

// TestRelayIsUnderTheOriginLimit: a relay holds its origin permit until
// its body is read, so a full limit sheds other fetches (counted), large
// or not; the permit comes back when the relay ends.
func TestRelayIsUnderTheOriginLimit(t *testing.T) {
	o := &bigOrigin{size: 200 << 10, part: 100 << 10, release: make(chan struct{})}
	var sheds atomic.Int64
	g := newBigGroup(t, o, func(c *Config) {
		c.MinLimit, c.InitialLimit, c.MaxLimit = 1, 1, 1
		c.Shed = func(reason string) {
			if reason == "origin_limit" {
				sheds.Add(1)
			}
		}
	})
	r, base := get("/big")
	res, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || res.Stream == nil {
		t.Fatalf("fetch: %v", err)
	}
	r2, base2 := get("/other-big")
	if _, err := g.Fetch(context.Background(), r2, base2, nil, nil); !errors.Is(err, ErrShed) {
		t.Fatalf("second object while the relay holds the limit: err = %v, want ErrShed", err)
	}
	if sheds.Load() != 1 {
		t.Errorf("origin_limit shed %d times, want 1", sheds.Load())
	}
	close(o.release)
	if b, err := readStream(res, nil); err != nil || len(b) != o.size {
		t.Fatalf("relay: %d bytes, %v", len(b), err)
	}
	waitUntil(t, func() bool { return g.limit.Inflight() == 0 })
	if b, err := readStream(g.Fetch(context.Background(), r2, base2, nil, nil)); err != nil || len(b) != o.size {
		t.Fatalf("second object after the relay: %d bytes, %v", len(b), err)
	}
}

// TestRelayEndsOnClose: Close cuts a relay in progress; its reader gets
// an error, never a short body that looks whole.
func TestRelayEndsOnClose(t *testing.T) {
	o := &bigOrigin{size: 1 << 20, part: 100 << 10, release: make(chan struct{})}
	defer close(o.release)
	g := newBigGroup(t, o, nil)
	r, base := get("/big")
	res, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || res.Stream == nil {
		t.Fatalf("fetch: %v", err)
	}
	defer res.Stream.Body.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(res.Stream.Body)
		done <- err
	}()
	waitUntil(t, func() bool {
		rl := g.joinRelay(call{r: r, base: base})
		if rl == nil {
			return false
		}
		rl.mu.Lock()
		defer rl.mu.Unlock()
		return rl.reading
	})
	g.Close()
	if err := <-done; err == nil {
		t.Error("reader saw a complete body after Close cut the relay")
	}
}
