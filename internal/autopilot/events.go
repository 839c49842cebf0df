package autopilot

import (
	"sync"
	"time"
)

// DefaultMaxEvents is how many recent decisions a Leader keeps.
const DefaultMaxEvents = 512

// Event actions.
const (
	EventScaleOut = "scale_out"
	EventScaleIn  = "scale_in"
	// EventOperator is an operator's change, such as a key's pin or cap.
	EventOperator = "operator"
)

// Event is one scale decision and how carrying it out went, for
// /api/v1/events. Renewals are counted, not recorded.
type Event struct {
	Time    time.Time `json:"time"`
	Key     string    `json:"key"`
	Action  string    `json:"action"`         // EventScaleOut, EventScaleIn or EventOperator
	Node    string    `json:"node,omitempty"` // the replica's node
	Reason  string    `json:"reason"`
	Desired int       `json:"desired"`         // members wanted, owner included
	Current int       `json:"current"`         // members when decided
	Error   string    `json:"error,omitempty"` // why it failed; empty if it succeeded
}

func eventOf(at time.Time, act Action, err error) Event {
	ev := Event{
		Time: at, Key: act.Key, Node: act.Node, Reason: act.Reason,
		Desired: act.Desired, Current: act.Current,
	}
	switch act.Kind {
	case ScaleOut:
		ev.Action = EventScaleOut
	case ScaleIn:
		ev.Action = EventScaleIn
	default:
		ev.Action = act.Kind.String()
	}
	if err != nil {
		ev.Error = err.Error()
	}
	return ev
}

// eventRing keeps the latest events in a fixed ring.
type eventRing struct {
	mu   sync.Mutex // guards buf, next and full
	buf  []Event
	next int  // where the next event goes
	full bool // buf has wrapped
}

func newEventRing(n int) *eventRing { return &eventRing{buf: make([]Event, n)} }

func (r *eventRing) add(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = ev
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// last returns up to n events, newest first; n <= 0 means all kept.
func (r *eventRing) last(n int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.next
	if r.full {
		size = len(r.buf)
	}
	if n <= 0 || n > size {
		n = size
	}
	out := make([]Event, n)
	for i := range out {
		out[i] = r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
	}
	return out
}
