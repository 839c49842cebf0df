package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// reply is what one request of a stampede got.
type reply struct {
	status   int    // 0: no response (err says why)
	err      string // a short class: dial, write, read, timeout
	latency  time.Duration
	cache    string // Cache-Status (numbers masked), X-Cache or Varnish's hit/miss
	servedBy string // X-Served-By
}

// stampede opens n connections, spread round-robin over targets, then
// releases one GET of path on every connection at once and reads every
// reply in full. Latency runs from the release to the last byte of the body,
// so it includes the client's own scheduling on this machine. t0 is the
// release time.
func stampede(ctx context.Context, targets []string, path string, n int, timeout time.Duration) (replies []reply, t0 time.Time, err error) {
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// Dial with bounded parallelism, so the listeners' backlogs never
	// overflow (an overflow costs a 1 s SYN retry, before the release).
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		dialErr error
		sem     = make(chan struct{}, 64)
		d       = net.Dialer{Timeout: 10 * time.Second}
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.DialContext(ctx, "tcp", targets[i%len(targets)])
			if err != nil {
				mu.Lock()
				dialErr = err
				mu.Unlock()
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if dialErr != nil {
		return nil, time.Time{}, fmt.Errorf("dial for the stampede: %w", dialErr)
	}

	reqs := make([][]byte, len(targets))
	for i, t := range targets {
		reqs[i] = []byte("GET " + path + " HTTP/1.1\r\nHost: " + t + "\r\nUser-Agent: crowdpilot-stampede\r\nAccept: */*\r\n\r\n")
	}
	replies = make([]reply, n)
	release := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			replies[i] = roundTrip(conns[i], reqs[i%len(targets)], t0, timeout)
		}()
	}
	t0 = time.Now()
	close(release)
	wg.Wait()
	return replies, t0, nil
}

func roundTrip(c net.Conn, req []byte, t0 time.Time, timeout time.Duration) reply {
	c.SetDeadline(t0.Add(timeout))
	if _, err := c.Write(req); err != nil {
		return reply{err: errClass("write", err), latency: time.Since(t0)}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return reply{err: errClass("read", err), latency: time.Since(t0)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r := reply{status: resp.StatusCode, latency: time.Since(t0), cache: cacheLabel(resp.Header), servedBy: resp.Header.Get("X-Served-By")}
	if err != nil {
		r.status, r.err = 0, errClass("body", err)
	}
	return r
}

func errClass(stage string, err error) string {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return stage + " timeout"
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return stage + " eof"
	}
	return stage + " error"
}

var numbers = regexp.MustCompile(`(ttl|age)=-?[0-9]+`)

// cacheLabel says how a contender answered: crowdpilot's Cache-Status (TTLs
// masked, so equal outcomes count together), nginx's X-Cache, or Varnish's
// hit or miss (two transaction IDs in X-Varnish mean a hit).
func cacheLabel(h http.Header) string {
	if cs := h.Values("Cache-Status"); len(cs) > 0 {
		return numbers.ReplaceAllString(strings.Join(cs, ", "), "${1}=N")
	}
	if x := h.Get("X-Cache"); x != "" {
		return "nginx " + x
	}
	if x := h.Get("X-Varnish"); x != "" {
		if len(strings.Fields(x)) == 2 {
			return "varnish hit"
		}
		return "varnish miss"
	}
	return "-"
}
