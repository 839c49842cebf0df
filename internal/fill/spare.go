package fill

import (
	"context"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A cold stampede's one origin fetch is the first request a node sends
// after thousands of connections turned readable at once. When it needs a
// new connection, its dial waits for the runtime's network poller to see
// the connect complete, and the poller is polled last while that many
// goroutines are runnable: 20 to 50 ms added to every request of the
// stampede (bench/RESULTS.md, "Quiet nodes and a spare origin connection").
// A spare connection, dialled ahead of need, costs the origin one idle
// TCP connection per node and takes that wait out.

// spareMaxAge bounds how long a spare waits for its request: origins close
// a connection that never brought a request after their header timeout
// (nginx, Node.js, Apache: 20 to 60 s), and a spare is replaced before that.
const spareMaxAge = 15 * time.Second

// spareDialer dials for the origin transport, keeping one connection to
// the origin's address dialled ahead: a dial to that address takes the
// spare (when it is still open) and dials the next in the background;
// other addresses (sites with origins of their own) are dialled as asked.
// At most one spare and one background dial exist at a time.
type spareDialer struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	addr    string // the origin's host:port
	timeout time.Duration
	now     func() time.Time
	results *prometheus.CounterVec // used, stale, dial_error

	ctx    context.Context // ends with close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	spare   net.Conn
	born    time.Time
	dialing bool
	closed  bool
}

func newSpareDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, timeout time.Duration, now func() time.Time, results *prometheus.CounterVec) *spareDialer {
	d := &spareDialer{dial: dial, addr: addr, timeout: timeout, now: now, results: results}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d
}

// start dials the first spare and replaces it every spareMaxAge while it
// goes unused, until close.
func (d *spareDialer) start() {
	d.refill()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(spareMaxAge / 3)
		defer t.Stop()
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
			}
			d.mu.Lock()
			old := d.spare
			if old != nil && d.now().Sub(d.born) < spareMaxAge*2/3 {
				old = nil // young enough to last until the next check
			} else {
				d.spare = nil
			}
			d.mu.Unlock()
			if old != nil {
				old.Close()
			}
			d.refill()
		}
	}()
}

// DialContext is the transport's dialler.
func (d *spareDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != d.addr || (network != "tcp" && network != "tcp4" && network != "tcp6") {
		return d.dial(ctx, network, addr)
	}
	c := d.take()
	d.refill()
	if c != nil {
		return c, nil
	}
	return d.dial(ctx, network, addr)
}

// take returns the spare if it is young and still open, else nil.
func (d *spareDialer) take() net.Conn {
	d.mu.Lock()
	c, born := d.spare, d.born
	d.spare = nil
	d.mu.Unlock()
	if c == nil {
		return nil
	}
	if d.now().Sub(born) >= spareMaxAge || !stillOpen(c) {
		c.Close()
		d.results.WithLabelValues("stale").Inc()
		return nil
	}
	d.results.WithLabelValues("used").Inc()
	return c
}

// refill dials a new spare in the background unless one is held or on
// its way.
func (d *spareDialer) refill() {
	d.mu.Lock()
	if d.closed || d.dialing || d.spare != nil {
		d.mu.Unlock()
		return
	}
	d.dialing = true
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.ctx, d.timeout)
		c, err := d.dial(ctx, "tcp", d.addr)
		cancel()
		if err != nil {
			d.results.WithLabelValues("dial_error").Inc()
		}
		d.mu.Lock()
		d.dialing = false
		if err == nil && !d.closed && d.spare == nil {
			d.spare, d.born, c = c, d.now(), nil
		}
		d.mu.Unlock()
		if c != nil {
			c.Close()
		}
	}()
}

// close closes the spare and waits for the background dials.
func (d *spareDialer) close() {
	d.mu.Lock()
	d.closed = true
	c := d.spare
	d.spare = nil
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	if c != nil {
		c.Close()
	}
}

// originAddr is the host:port the transport dials for origin u.
func originAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
