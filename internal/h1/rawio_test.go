package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// smallBuffers accepts TCP connections with a tiny send buffer, so that a
// response larger than a few KiB must wait for the socket to drain.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetWriteBuffer(4096)
	return c, nil // still a *net.TCPConn: h1 reads and writes it raw
}

func TestRawIOOnlyForTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if newRawIO(a) != nil {
		t.Error("a pipe got raw I/O")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if newRawIO(c) == nil && rawIOSupported {
		t.Error("a TCP connection did not get raw I/O")
	}
}

// A response far larger than both socket buffers, to a client that reads
// slowly: the raw writes stop at EAGAIN, wait for the socket and go on
// where they stopped, byte for byte.
func TestRawWritesWaitForTheSocket(t *testing.T) {
	body := make([]byte, 2<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	s := &Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }),
		Fallback: &http.Server{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- s.Serve(smallBuffers{ln}) }()
	defer func() { s.Close(); <-done }()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	for range 2 { // the connection stays usable after a long write
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		buf := make([]byte, 700) // small reads, the server's socket buffer small: its writes wait many times
		for {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes of the body (%v, %v): %v", got.Len(), resp.ContentLength, resp.TransferEncoding, err)
			}
		}
		if !bytes.Equal(got.Bytes(), body) {
			t.Fatalf("body: %d bytes, not the %d written", got.Len(), len(body))
		}
	}
}

// A client that never reads a large response is cut at the write
// deadline, which the raw writes honour as net.Conn's do.
func TestRawWritesHonourTheWriteTimeout(t *testing.T) {
	body := make([]byte, 4<<20)
	cut := make(chan string, 4)
	s := &Server{
		Handler:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }),
		Fallback:     &http.Server{},
		WriteTimeout: 100 * time.Millisecond,
		OnTimeout:    func(phase string) { cut <- phase },
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(smallBuffers{ln}) }()
	defer func() { s.Close(); <-done }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	select {
	case p := <-cut:
		if p != "write" {
			t.Errorf("cut as %q, want write", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a client that never reads was not cut")
	}
}
