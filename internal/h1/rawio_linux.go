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
type rawIO struct {
	rc     syscall.RawConn
	local  net.Addr
	remote net.Addr
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
	return &rawIO{rc: rc, local: tc.LocalAddr(), remote: tc.RemoteAddr()}
}

func (r *rawIO) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case 0:
				n = int(m)
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // the poller waits for the socket, honouring the deadline
			default:
				errno = e
				return true
			}
		}
	})
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

func (r *rawIO) write(b []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := r.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
			switch e {
			case 0:
				n += int(m)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // the socket's buffer is full: wait until it drains
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, r.opError("write", errno)
	}
	return n, nil
}

func (r *rawIO) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.local, Addr: r.remote, Err: os.NewSyscallError(op, errno)}
}

const rawIOSupported = true
