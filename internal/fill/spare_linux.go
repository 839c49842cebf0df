package fill

import (
	"net"
	"syscall"
)

// stillOpen reports whether c, which should have nothing to read, is still
// open: a peek that does not wait finds no data and no end of stream. It
// does not go through the poller (Control, not Read), so it never parks.
func stillOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	if err := rc.Control(func(fd uintptr) {
		// Nothing to read yet: open. A byte (nothing was asked) or the
		// end of the stream (n == 0): not a connection to send on.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	}); err != nil {
		return false
	}
	return open
}
