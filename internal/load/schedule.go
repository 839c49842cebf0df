package load

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// ErrBadCrowd is wrapped by ParseCrowd and Schedule.Validate for a crowd
// spec that cannot be run.
var ErrBadCrowd = errors.New("bad crowd spec")

// A Crowd multiplies the baseline rate for a while: the rate climbs linearly
// from 1× to Multiplier× over Ramp starting at Start, holds for Hold, then
// falls back linearly to 1× over Decay. Ramp 0 is a step. The zero Crowd is
// no crowd.
type Crowd struct {
	Multiplier float64       // ≥ 1
	Start      time.Duration // when the ramp begins
	Ramp       time.Duration // 1× → Multiplier×
	Hold       time.Duration // at Multiplier×
	Decay      time.Duration // Multiplier× → 1×
}

// IsZero reports whether c is no crowd.
func (c Crowd) IsZero() bool { return c == Crowd{} }

// End is when the crowd has left: Start+Ramp+Hold+Decay.
func (c Crowd) End() time.Duration { return c.Start + c.Ramp + c.Hold + c.Decay }

// String formats c in the syntax ParseCrowd reads.
func (c Crowd) String() string {
	if c.IsZero() {
		return ""
	}
	s := fmt.Sprintf("%sx@%s+%s", strconv.FormatFloat(c.Multiplier, 'g', -1, 64), c.Start, c.Hold)
	if c.Ramp > 0 {
		s += ",ramp=" + c.Ramp.String()
	}
	if c.Decay > 0 {
		s += ",decay=" + c.Decay.String()
	}
	return s
}

// ParseCrowd reads "MULTx@START+HOLD[,ramp=D][,decay=D]", for example
// "50x@10s+30s" (a step to 50× at 10 s, held 30 s) or
// "50x@10s+30s,ramp=2s,decay=5s". The empty string is no crowd.
func ParseCrowd(spec string) (Crowd, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Crowd{}, nil
	}
	bad := func(why string) (Crowd, error) {
		return Crowd{}, fmt.Errorf("%w %q: %s (want e.g. 50x@10s+30s,ramp=2s,decay=5s)", ErrBadCrowd, spec, why)
	}
	head, opts, hasOpts := strings.Cut(spec, ",")
	mult, rest, ok := strings.Cut(head, "x@")
	if !ok {
		return bad("missing MULTx@")
	}
	start, hold, ok := strings.Cut(rest, "+")
	if !ok {
		return bad("missing +HOLD")
	}
	var c Crowd
	var err error
	if c.Multiplier, err = strconv.ParseFloat(mult, 64); err != nil || math.IsNaN(c.Multiplier) || math.IsInf(c.Multiplier, 0) {
		return bad("multiplier is not a number")
	}
	if c.Multiplier < 1 {
		return bad("multiplier below 1")
	}
	if c.Start, err = time.ParseDuration(start); err != nil || c.Start < 0 {
		return bad("start is not a duration ≥ 0")
	}
	if c.Hold, err = time.ParseDuration(hold); err != nil || c.Hold < 0 {
		return bad("hold is not a duration ≥ 0")
	}
	seen := map[string]bool{}
	for opt := range strings.SplitSeq(opts, ",") {
		if !hasOpts {
			break
		}
		k, v, ok := strings.Cut(opt, "=")
		if !ok || seen[k] {
			return bad(fmt.Sprintf("option %q is not ramp=D or decay=D, once each", opt))
		}
		seen[k] = true
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return bad(fmt.Sprintf("%s is not a duration ≥ 0", k))
		}
		switch k {
		case "ramp":
			c.Ramp = d
		case "decay":
			c.Decay = d
		default:
			return bad(fmt.Sprintf("unknown option %q", k))
		}
	}
	if c.Ramp+c.Hold+c.Decay == 0 {
		return bad("crowd lasts no time")
	}
	return c, nil
}

// A Schedule is the open-loop send plan: Base requests per second for
// Duration, multiplied by the Crowd while it lasts. It implements
// vegeta.Pacer, and At gives the planned send time of every request.
type Schedule struct {
	Base     float64 // requests per second outside the crowd, > 0
	Duration time.Duration
	Crowd    Crowd
}

var _ vegeta.Pacer = Schedule{}

// Validate checks the schedule and that the crowd fits inside it.
func (s Schedule) Validate() error {
	switch {
	case !(s.Base > 0) || math.IsInf(s.Base, 0):
		return fmt.Errorf("rate %v: want a number of requests per second > 0", s.Base)
	case s.Duration <= 0:
		return fmt.Errorf("duration %v: want > 0", s.Duration)
	case s.Crowd.IsZero():
		return nil
	case s.Crowd.Multiplier < 1:
		return fmt.Errorf("%w %q: multiplier below 1", ErrBadCrowd, s.Crowd)
	case s.Crowd.End() > s.Duration:
		return fmt.Errorf("%w %q: the crowd ends at %v, after the %v run", ErrBadCrowd, s.Crowd, s.Crowd.End(), s.Duration)
	}
	return nil
}

// segment is a stretch of the schedule over which the rate changes linearly
// from r0 to r1 (requests per second).
type segment struct {
	from, to time.Duration
	r0, r1   float64
}

func (g segment) seconds() float64 { return (g.to - g.from).Seconds() }

// hits is the number of requests planned in the first x seconds of g.
func (g segment) hits(x float64) float64 {
	l := g.seconds()
	if l == 0 {
		return 0
	}
	return g.r0*x + (g.r1-g.r0)*x*x/(2*l)
}

// segments cuts s into at most five linear pieces (before, ramp, hold,
// decay, after) in buf, dropping empty ones. buf spares the pacer an
// allocation per request.
func (s Schedule) segments(buf *[5]segment) []segment {
	c, b := s.Crowd, s.Base
	if c.IsZero() {
		buf[0] = segment{0, s.Duration, b, b}
		return buf[:1]
	}
	m := b * c.Multiplier
	t1, t2, t3, t4 := c.Start, c.Start+c.Ramp, c.Start+c.Ramp+c.Hold, c.End()
	out := buf[:0]
	for _, g := range [...]segment{{0, t1, b, b}, {t1, t2, b, m}, {t2, t3, m, m}, {t3, t4, m, b}, {t4, s.Duration, b, b}} {
		if g.to > g.from {
			out = append(out, g)
		}
	}
	return out
}

// Multiplier is the crowd multiplier in force at t (1 outside the crowd).
func (s Schedule) Multiplier(t time.Duration) float64 {
	return s.Rate(t) / s.Base
}

// Rate is the planned rate in requests per second at t. It implements
// vegeta.Pacer.
func (s Schedule) Rate(t time.Duration) float64 {
	var buf [5]segment
	for _, g := range s.segments(&buf) {
		if t >= g.from && t < g.to {
			return g.r0 + (g.r1-g.r0)*(t-g.from).Seconds()/g.seconds()
		}
	}
	return 0
}

// Hits is the number of requests planned in [0, t).
func (s Schedule) Hits(t time.Duration) float64 {
	var n float64
	var buf [5]segment
	for _, g := range s.segments(&buf) {
		if t <= g.from {
			break
		}
		n += g.hits((min(t, g.to) - g.from).Seconds())
	}
	return n
}

// At is the planned send time of request n (counting from 0): the moment
// when Hits reaches n, so request 0 leaves at once and every request is
// planned in [0, Duration). ok is false when there is no request n.
func (s Schedule) At(n uint64) (at time.Duration, ok bool) {
	rem := float64(n)
	var buf [5]segment
	for _, g := range s.segments(&buf) {
		area := g.hits(g.seconds())
		if rem >= area-1e-9 { // the tolerance keeps float error from adding a request at the end
			rem -= area
			continue
		}
		// Solve r0·x + a·x² = rem for x in [0, len), with a = (r1-r0)/(2·len).
		// This form stays exact when a is 0 or negative (decay).
		a := (g.r1 - g.r0) / (2 * g.seconds())
		x := 2 * rem / (g.r0 + math.Sqrt(max(0, g.r0*g.r0+4*a*rem)))
		return g.from + time.Duration(x*float64(time.Second)), true
	}
	return 0, false
}

// Pace implements vegeta.Pacer: it waits until request hits is due and stops
// after the last one.
func (s Schedule) Pace(elapsed time.Duration, hits uint64) (wait time.Duration, stop bool) {
	at, ok := s.At(hits)
	if !ok {
		return 0, true
	}
	return max(0, at-elapsed), false
}
