// Command olc is an open-loop HTTP/1.1 client over a pool of keep-alive
// connections: it sends --rate requests a second, each on the connection
// idle longest (a new one if none is), and reports the latency from each
// request's planned time and the CPU the server process --pid used per
// answer. It is how bench/hitpath.sh measures sparse traffic (one request
// per wakeup), the pattern a node sees behind a round-robin balancer.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func cpuOf(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return float64(u+s) / 100
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "")
	path := flag.String("path", "/", "")
	rate := flag.Int("rate", 2250, "")
	conns := flag.Int("conns", 200, "")
	dur := flag.Duration("d", 10*time.Second, "")
	pid := flag.Int("pid", 0, "")
	host := flag.String("host", "", "")
	flag.Parse()
	h := *host
	if h == "" {
		h = *addr
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + h + "\r\nUser-Agent: olc\r\n\r\n")
	type job struct{ planned time.Time }
	free := make(chan chan job, 100000)
	var mu sync.Mutex
	var lat []time.Duration
	var errs, opened atomic.Int64
	var start func() chan job
	start = func() chan job {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			errs.Add(1)
			return nil
		}
		opened.Add(1)
		ch := make(chan job, 1)
		go func() {
			br := bufio.NewReader(c)
			for j := range ch {
				if _, err := c.Write(req); err != nil {
					errs.Add(1)
					return
				}
				cl := -1
				ok := true
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						errs.Add(1)
						return
					}
					if len(line) <= 2 {
						break
					}
					if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && strings.EqualFold(string(line[:15]), "content-length:") {
						cl, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
					}
					if bytes.HasPrefix(line, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
						ok = false
					}
				}
				if cl > 0 {
					if _, err := br.Discard(cl); err != nil {
						errs.Add(1)
						return
					}
				}
				if !ok {
					errs.Add(1)
				}
				d := time.Since(j.planned)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				free <- ch
			}
		}()
		return ch
	}
	for i := 0; i < *conns; i++ {
		if ch := start(); ch != nil {
			free <- ch
		}
	}
	c0 := cpuOf(*pid)
	t0 := time.Now()
	iv := time.Second / time.Duration(*rate)
	n := int(*dur / iv)
	for i := 0; i < n; i++ {
		p := t0.Add(time.Duration(i) * iv)
		if d := time.Until(p); d > 0 {
			time.Sleep(d)
		}
		var ch chan job
		select {
		case ch = <-free:
		default:
			ch = start()
		}
		if ch != nil {
			ch <- job{p}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		k := len(lat)
		mu.Unlock()
		if k+int(errs.Load()) >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c1 := cpuOf(*pid)
	mu.Lock()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	q := func(f float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(f*float64(len(lat)-1))]
	}
	fmt.Printf("sent %d answered %d errs %d conns %d p50 %v p99 %v max %v server_cpu %.2fs = %.1f us/answer\n",
		n, len(lat), errs.Load(), opened.Load(), q(.5), q(.99), q(1), c1-c0, (c1-c0)*1e6/float64(max(1, len(lat))))
}
