package node

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestClientConnectionsSkipKeepAliveProbesWithAnIdleTimeout: with an idle
// timeout the data listener's accepted connections carry no TCP keep-alive
// (setting it costs every accept four syscalls); without one they do, as
// the only end of a vanished client's idle connection.
func TestClientConnectionsSkipKeepAliveProbesWithAnIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		idle time.Duration
		want int
	}{{time.Minute, 0}, {0, 1}} {
		lc := dataListenConfig(tc.idle)
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := sc.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		if got != tc.want {
			t.Errorf("idle timeout %v: SO_KEEPALIVE %d on an accepted connection, want %d", tc.idle, got, tc.want)
		}
		sc.Close()
		c.Close()
		ln.Close()
	}
}
