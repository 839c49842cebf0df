package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// BenchmarkHit serves a cache hit's answer (seven fields, 1 KiB) to
// keep-alive clients over loopback, through h1 and through net/http alone,
// in one run: compare the two cpu-ns/op (the CPU of client and server
// together per request; the client's share is the same for both).
//
//	go test -run XXX -bench Hit -benchmem ./internal/h1/
func BenchmarkHit(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	hit := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Age"] = []string{"1"}
		h["Cache-Control"] = []string{"public, max-age=5"}
		h["Cache-Status"] = []string{"crowdpilot; hit; ttl=4"}
		h["Content-Length"] = []string{"1024"}
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["Etag"] = []string{`"v0"`}
		h["X-Served-By"] = []string{"n1"}
		w.Write(body)
	})
	b.Run("h1", func(b *testing.B) {
		st := start(b, hit, nil)
		drive(b, st.lean)
	})
	b.Run("net-http", func(b *testing.B) {
		st := start(b, hit, nil)
		drive(b, st.std)
	})
}

// drive sends b.N requests over 8 keep-alive connections.
func drive(b *testing.B, addr string) {
	const conns = 8
	req := []byte("GET /obj/1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for i := range conns {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 8192)
			for range n {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if err := readAnswer(br); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// cpuTime is the CPU this process used so far (client and server alike),
// in nanoseconds: unlike ns/op, it does not depend on what else runs.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// readAnswer reads one response with a Content-Length.
func readAnswer(br *bufio.Reader) error {
	clen := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			clen, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if clen < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(clen)
	return err
}
