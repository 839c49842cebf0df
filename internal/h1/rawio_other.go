//go:build !linux

package h1

import "net"

// rawIO is only implemented on Linux (rawio_linux.go); elsewhere a
// connection reads and writes through net.Conn.
type rawIO struct{}

func newRawIO(net.Conn) *rawIO { return nil }

func (*rawIO) read([]byte) (int, error)  { panic("h1: no raw I/O on this platform") }
func (*rawIO) write([]byte) (int, error) { panic("h1: no raw I/O on this platform") }

const rawIOSupported = false
