package h1

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Raw socket I/O. A Go program under a CPU cap of one core runs with one
// P, and every read or write through net.Conn enters the scheduler's
// syscall state: if the runtime's monitor thread (sysmon) is asleep, that
// wakes it, and a write longer than its 20 µs nap lets it take the P away
// and hand it to another thread. When requests come one per wakeup (a node
// behind a round-robin balancer), that costs each request two or three
// thread switches on top of its own work. The sockets are non-blocking, so
// a read or write returns at once (with EAGAIN when it would block, and
// then the runtime's poller waits, as net.Conn would); made as raw system
// calls inside syscall.RawConn's callbacks, they leave the P with this
// goroutine and wake nobody. Deadlines, Close and the poller behave as for
// net.Conn: RawConn.Read and Write honour them.

// rawIO is a connection's raw socket, or nil to use net.Conn's methods.
// Its callbacks are bound once, when the connection is accepted, and take
// their buffer and leave their result in the struct: a closure made per
// call would cost each request two allocations per read and per write.
// One goroutine reads and writes a connection, so the fields need no lock.
type rawIO struct {
	rc     syscall.RawConn
	local  net.Addr
	remote net.Addr

	b     []byte // the buffer of the read or write in progress
	n     int    // bytes read, or written so far
	errno syscall.Errno

	readFn, writeFn func(fd uintptr) bool
}

func newRawIO(nc net.Conn) *rawIO {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{rc: rc, local: tc.LocalAddr(), remote: tc.RemoteAddr()}
	r.readFn, r.writeFn = r.readOnce, r.writeAll
	return r
}

func (r *rawIO) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r.b, r.n, r.errno = b, 0, 0
	err := r.rc.Read(r.readFn)
	n, errno := r.n, r.errno
	r.b = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, r.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is read's callback: false asks the poller to wait.
func (r *rawIO) readOnce(fd uintptr) bool {
	for {
		m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.b[0])), uintptr(len(r.b)))
		switch e {
		case 0:
			r.n = int(m)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for the socket, honouring the deadline
		default:
			r.errno = e
			return true
		}
	}
}

func (r *rawIO) write(b []byte) (int, error) {
	r.b, r.n, r.errno = b, 0, 0
	err := r.rc.Write(r.writeFn)
	n, errno := r.n, r.errno
	r.b = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, r.opError("write", errno)
	}
	return n, nil
}

// writeAll is write's callback: false (the socket's buffer is full) asks
// the poller to wait until it drains.
func (r *rawIO) writeAll(fd uintptr) bool {
	for r.n < len(r.b) {
		m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.b[r.n])), uintptr(len(r.b)-r.n))
		switch e {
		case 0:
			r.n += int(m)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
	}
	return true
}

func (r *rawIO) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.local, Addr: r.remote, Err: os.NewSyscallError(op, errno)}
}

const rawIOSupported = true
