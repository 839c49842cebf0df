package fill

// A relay's window: readers at their own offsets in one buffer of the body,
// the upstream read by whichever reader needs the next piece, and the
// laggards cut (see relay.go).

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// relayReader is one reader's position in a relay.
type relayReader struct {
	rl     *relay
	off    int64 // bytes of the body this reader has read
	cut    bool  // fell behind and was cut (errRelayLag)
	closed bool
}

func (rd *relayReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	rl := rd.rl
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for {
		switch {
		case rd.closed:
			return 0, errors.New("relay: read after close")
		case rd.cut:
			return 0, errRelayLag
		case rl.dead:
			return 0, errRelayClosed
		case rd.off < rl.pos:
			n := rl.copyAt(p, rd.off)
			rd.off += int64(n)
			rl.trim()
			return n, nil
		case rl.err != nil:
			return 0, rl.err
		case rl.reading:
			rl.wait(0) // another reader is reading upstream
		case rl.pos-rl.low()+relayChunk <= rl.max:
			rl.readUpstream()
		case rl.joinable:
			rl.closeWindow() // past the head: no one else may start now
		default:
			// The window is full and the slowest readers hold it. Within
			// each RelayStall of waiting they must move it by half a
			// window, or they are cut.
			now := time.Now()
			if rl.mark.IsZero() {
				rl.mark, rl.markLow = now, rl.low()
			}
			if left := rl.g.cfg.RelayStall - now.Sub(rl.mark); left > 0 {
				rl.wait(left)
				continue
			}
			if rl.low()-rl.markLow < rl.g.cfg.RelayWindow/2 {
				rl.cutLaggards()
			}
			rl.mark, rl.markLow = now, rl.low()
		}
	}
}

// low is the lowest offset a reader may still read from: 0 while new
// readers may join, else the slowest reader's. Called with mu held.
func (rl *relay) low() int64 {
	if rl.joinable {
		return 0
	}
	low := rl.pos
	for rd := range rl.readers {
		low = min(low, rd.off)
	}
	return low
}

// Close detaches the reader; the last reader of a relay no one can join
// any more ends it.
func (rd *relayReader) Close() error {
	rl := rd.rl
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rd.closed {
		return nil
	}
	rd.closed = true
	if _, ok := rl.readers[rd]; ok {
		delete(rl.readers, rd)
		rl.g.m.relayReading.Dec()
	}
	rl.trim()
	rl.broadcast()
	if len(rl.readers) == 0 {
		if rl.joinable {
			rl.idle.Reset(rl.g.cfg.RelayStall)
		} else {
			rl.end()
		}
	}
	return nil
}

// copyAt copies the body from off into p. Called with mu held.
func (rl *relay) copyAt(p []byte, off int64) int {
	n := 0
	for _, s := range rl.spans {
		if end := s.off + int64(len(s.b)); off >= end {
			continue
		}
		k := copy(p[n:], s.b[off-s.off:])
		n += k
		off += int64(k)
		if n == len(p) {
			break
		}
	}
	return n
}

// readUpstream reads the next piece of the body, releasing mu meanwhile.
// An upstream that sends nothing for Config.Timeout is cut. Called with mu
// held.
func (rl *relay) readUpstream() {
	rl.reading = true
	if n := len(rl.spans); n == 0 || len(rl.spans[n-1].b) == cap(rl.spans[n-1].b) {
		rl.spans = append(rl.spans, span{off: rl.pos, b: make([]byte, 0, relayChunk)})
	}
	tail := &rl.spans[len(rl.spans)-1]
	buf := tail.b[len(tail.b):cap(tail.b)]
	buf = buf[:min(len(buf), relayChunk)]
	rl.mu.Unlock()
	timer := time.AfterFunc(rl.g.cfg.Timeout, func() { rl.cancel(errRelayIdle) })
	n, err := rl.body.Read(buf)
	timer.Stop()
	rl.mu.Lock()
	rl.reading = false
	if !rl.dead { // not ended meanwhile (Group.Close)
		tail = &rl.spans[len(rl.spans)-1]
		tail.b = tail.b[:len(tail.b)+n]
		rl.pos += int64(n)
		if err != nil {
			if err != io.EOF {
				err = fmt.Errorf("relay %s: %w", rl.meta.BaseKey, err)
				rl.g.m.fetches.WithLabelValues("body_error").Inc()
			}
			rl.err = err
			rl.release()
		}
	}
	rl.broadcast()
}

// trim drops what every reader has read, once no reader can start at the
// first byte; it never drops the last span (upstream may be filling it).
// Called with mu held.
func (rl *relay) trim() {
	if rl.joinable {
		return
	}
	low := rl.low()
	k := 0
	for k < len(rl.spans)-1 && rl.spans[k].off+int64(len(rl.spans[k].b)) <= low {
		k++
	}
	if k == 0 {
		return
	}
	clear(rl.spans[:k])
	rl.spans = rl.spans[k:]
	rl.broadcast()
}

// closeWindow stops new readers from joining. Called with mu held.
func (rl *relay) closeWindow() {
	rl.joinable = false
	rl.idle.Stop()
	rl.g.relayMu.Lock()
	if rl.name != "" && rl.g.joinable[rl.name] == rl {
		delete(rl.g.joinable, rl.name)
	}
	rl.g.relayMu.Unlock()
	rl.trim()
}

// cutLaggards cuts every reader too far behind for the window to have room
// for the next read. Called with mu held.
func (rl *relay) cutLaggards() {
	need := rl.pos + relayChunk - rl.max // the lowest offset the window may start at
	for rd := range rl.readers {
		if rd.off < need {
			rd.cut = true
			delete(rl.readers, rd)
			rl.g.m.relayReading.Dec()
			rl.g.cfg.Shed("relay_lag")
		}
	}
	rl.trim()
}

// wait releases mu until the relay changes or d passes (0: no limit).
// Called with mu held.
func (rl *relay) wait(d time.Duration) {
	ch := rl.wake
	rl.mu.Unlock()
	if d <= 0 {
		<-ch
	} else {
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	rl.mu.Lock()
}

// broadcast wakes every waiting reader. Called with mu held.
func (rl *relay) broadcast() {
	close(rl.wake)
	rl.wake = make(chan struct{})
}

// idleOut ends a relay nobody has read for Config.RelayStall while it was
// open for joining.
func (rl *relay) idleOut() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.joinable && len(rl.readers) == 0 {
		rl.closeWindow()
		rl.end()
	}
}

// abandon ends a relay nobody reads yet: its fetcher cannot use it.
func (rl *relay) abandon() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.joinable && len(rl.readers) == 0 {
		rl.closeWindow()
		rl.end()
	}
}

// abort ends the relay for every reader (Group.Close).
func (rl *relay) abort() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.joinable {
		rl.closeWindow()
	}
	rl.end()
	rl.broadcast()
}

// end releases the upstream and the body held, and forgets the relay; its
// remaining readers (only on abort) fail. Called with mu held.
func (rl *relay) end() {
	rl.dead = true
	rl.release()
	rl.spans = nil
	rl.g.relayMu.Lock()
	delete(rl.g.relaysLive, rl)
	rl.g.relayMu.Unlock()
}

// release closes the upstream response once. Called with mu held; a read
// in progress ends with an error.
func (rl *relay) release() {
	if rl.released {
		return
	}
	rl.released = true
	rl.cancel(errRelayClosed)
	rl.body.Close()
}
