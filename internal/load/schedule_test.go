package load

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestParseCrowd(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		spec string
		want Crowd
	}{
		{"", Crowd{}},
		{"50x@10s+30s", Crowd{Multiplier: 50, Start: 10 * s, Hold: 30 * s}},
		{" 50x@10s+30s ", Crowd{Multiplier: 50, Start: 10 * s, Hold: 30 * s}},
		{"2.5x@0s+1m", Crowd{Multiplier: 2.5, Hold: time.Minute}},
		{"50x@10s+30s,ramp=2s", Crowd{Multiplier: 50, Start: 10 * s, Ramp: 2 * s, Hold: 30 * s}},
		{"50x@10s+30s,ramp=2s,decay=5s", Crowd{Multiplier: 50, Start: 10 * s, Ramp: 2 * s, Hold: 30 * s, Decay: 5 * s}},
		{"50x@10s+30s,decay=5s,ramp=2s", Crowd{Multiplier: 50, Start: 10 * s, Ramp: 2 * s, Hold: 30 * s, Decay: 5 * s}},
		{"10x@1s+0s,ramp=2s", Crowd{Multiplier: 10, Start: s, Ramp: 2 * s}},
		{"1x@1s+1s", Crowd{Multiplier: 1, Start: s, Hold: s}},
	} {
		got, err := ParseCrowd(tc.spec)
		if err != nil || got != tc.want {
			t.Errorf("ParseCrowd(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			continue
		}
		if back, err := ParseCrowd(got.String()); err != nil || back != got {
			t.Errorf("ParseCrowd(%q.String() = %q) = %+v, %v; want it back", tc.spec, got.String(), back, err)
		}
	}
}

func TestParseCrowdMalformed(t *testing.T) {
	for _, spec := range []string{
		"50",
		"50x",
		"50x@10s",
		"x@10s+30s",
		"fiftyx@10s+30s",
		"0.5x@10s+30s",
		"-2x@10s+30s",
		"NaNx@10s+30s",
		"Infx@10s+30s",
		"50x@10+30s",
		"50x@-1s+30s",
		"50x@10s+-30s",
		"50x@10s+30",
		"50x@10s+0s",
		"50x@10s+30s,",
		"50x@10s+30s,ramp",
		"50x@10s+30s,ramp=",
		"50x@10s+30s,ramp=-1s",
		"50x@10s+30s,ramp=2s,ramp=3s",
		"50x@10s+30s,jitter=2s",
		"50x@10s+30s;ramp=2s",
		"50X@10s+30s",
	} {
		if c, err := ParseCrowd(spec); !errors.Is(err, ErrBadCrowd) {
			t.Errorf("ParseCrowd(%q) = %+v, %v; want ErrBadCrowd", spec, c, err)
		}
	}
}

func TestScheduleValidate(t *testing.T) {
	s := time.Second
	crowd := Crowd{Multiplier: 50, Start: 10 * s, Hold: 30 * s}
	for _, tc := range []struct {
		name  string
		sched Schedule
		ok    bool
	}{
		{"baseline", Schedule{Base: 100, Duration: s}, true},
		{"crowd fits", Schedule{Base: 100, Duration: 40 * s, Crowd: crowd}, true},
		{"crowd too long", Schedule{Base: 100, Duration: 39 * s, Crowd: crowd}, false},
		{"zero rate", Schedule{Base: 0, Duration: s}, false},
		{"negative rate", Schedule{Base: -1, Duration: s}, false},
		{"NaN rate", Schedule{Base: math.NaN(), Duration: s}, false},
		{"zero duration", Schedule{Base: 1}, false},
	} {
		if err := tc.sched.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestScheduleRate(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	step := Schedule{Base: 100, Duration: 60 * s, Crowd: Crowd{Multiplier: 50, Start: 10 * s, Hold: 30 * s}}
	ramp := Schedule{Base: 100, Duration: 60 * s, Crowd: Crowd{Multiplier: 11, Start: 10 * s, Ramp: 2 * s, Hold: 30 * s, Decay: 4 * s}}
	for _, tc := range []struct {
		name  string
		sched Schedule
		at    time.Duration
		want  float64
	}{
		{"step before", step, 9999 * ms, 100},
		{"step start", step, 10 * s, 5000},
		{"step hold", step, 39999 * ms, 5000},
		{"step after", step, 40 * s, 100},
		{"step end", step, 60 * s, 0},
		{"ramp start", ramp, 10 * s, 100},
		{"ramp middle", ramp, 11 * s, 600},
		{"ramp top", ramp, 12 * s, 1100},
		{"decay start", ramp, 42 * s, 1100},
		{"decay quarter", ramp, 43 * s, 850},
		{"decay end", ramp, 46 * s, 100},
	} {
		if got := tc.sched.Rate(tc.at); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("%s: Rate(%v) = %v, want %v", tc.name, tc.at, got, tc.want)
		}
	}
	if got, want := ramp.Multiplier(11*s), 6.0; got != want {
		t.Errorf("Multiplier(11s) = %v, want %v", got, want)
	}
}

// TestScheduleAt checks that the planned send times count up to exactly the
// planned hits, in order, and that Pace follows them.
func TestScheduleAt(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name  string
		sched Schedule
		want  uint64 // requests in the whole run
	}{
		{"constant", Schedule{Base: 200, Duration: 3 * s}, 600},
		{"step", Schedule{Base: 10, Duration: 10 * s, Crowd: Crowd{Multiplier: 5, Start: 2 * s, Hold: 3 * s}}, 10*7 + 50*3},
		// ramp and decay of 2 s each from 10 to 50 req/s: 60 requests each.
		{"ramp", Schedule{Base: 10, Duration: 10 * s, Crowd: Crowd{Multiplier: 5, Start: 2 * s, Ramp: 2 * s, Hold: 2 * s, Decay: 2 * s}}, 10*4 + 60 + 100 + 60},
		{"fractional", Schedule{Base: 2.5, Duration: 3 * s}, 8},
	} {
		var n uint64
		prev := time.Duration(-1)
		for ; ; n++ {
			at, ok := tc.sched.At(n)
			if !ok {
				break
			}
			if at <= prev && n > 0 || at >= tc.sched.Duration {
				t.Fatalf("%s: At(%d) = %v after %v (duration %v)", tc.name, n, at, prev, tc.sched.Duration)
			}
			if h := tc.sched.Hits(at); math.Abs(h-float64(n)) > 1e-6 {
				t.Fatalf("%s: Hits(At(%d)=%v) = %v, want %d", tc.name, n, at, h, n)
			}
			if wait, stop := tc.sched.Pace(at-time.Millisecond/10, n); n > 0 && (stop || wait != time.Millisecond/10) {
				t.Fatalf("%s: Pace(At(%d)-100µs) = %v, %v; want 100µs, false", tc.name, n, wait, stop)
			}
			if wait, stop := tc.sched.Pace(at+time.Second, n); stop || wait != 0 {
				t.Fatalf("%s: Pace when late = %v, %v; want 0, false", tc.name, wait, stop)
			}
			prev = at
		}
		if n != tc.want {
			t.Errorf("%s: %d requests planned, want %d", tc.name, n, tc.want)
		}
		if _, stop := tc.sched.Pace(tc.sched.Duration, n); !stop {
			t.Errorf("%s: Pace after the last request does not stop", tc.name)
		}
	}
}
