package load

import (
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// second is a Second being recorded.
type second struct {
	Second
	hist    *hdr.Histogram // nil until the first outcome, and again once final
	pending int            // sent, not yet done
	closed  bool           // the pacer has moved past this second
}

// window is what completed since the last progress snapshot.
type window struct {
	Counts
	hist *hdr.Histogram
}

// recorder collects outcomes into per-second, per-phase and whole-run
// statistics. Its methods are safe for concurrent use.
type recorder struct {
	phases []Phase // names and bounds only; finish fills in the rest

	mu         sync.Mutex // guards everything below
	secs       []second
	openFrom   int              // seconds before this one are closed
	free       []*hdr.Histogram // released per-second histograms, for reuse
	phaseCount []Counts
	phaseHist  []*hdr.Histogram
	total      Counts
	totalHist  *hdr.Histogram
	win        window
	inflight   int
}

func newRecorder(s Schedule) *recorder {
	n := int((s.Duration + time.Second - 1) / time.Second)
	r := &recorder{
		phases:    phasesOf(s),
		secs:      make([]second, n),
		totalHist: newHist(),
		win:       window{hist: newHist()},
	}
	for i := range r.secs {
		from, to := time.Duration(i)*time.Second, min(time.Duration(i+1)*time.Second, s.Duration)
		r.secs[i].T = i
		r.secs[i].Planned = s.Hits(to) - s.Hits(from)
	}
	r.phaseCount = make([]Counts, len(r.phases))
	r.phaseHist = make([]*hdr.Histogram, len(r.phases))
	for i := range r.phaseHist {
		r.phaseHist[i] = newHist()
	}
	return r
}

// phasesOf names the parts of the run: before, during and after the crowd,
// or the whole run when there is none.
func phasesOf(s Schedule) []Phase {
	if s.Crowd.IsZero() {
		return []Phase{{Name: "run", From: 0, To: s.Duration}}
	}
	var out []Phase
	for _, p := range []Phase{
		{Name: "before", From: 0, To: s.Crowd.Start},
		{Name: "during", From: s.Crowd.Start, To: s.Crowd.End()},
		{Name: "after", From: s.Crowd.End(), To: s.Duration},
	} {
		if p.To > p.From {
			out = append(out, p)
		}
	}
	return out
}

func (r *recorder) phaseOf(at time.Duration) int {
	for i, p := range r.phases {
		if at < p.To {
			return i
		}
	}
	return len(r.phases) - 1
}

func (r *recorder) secOf(at time.Duration) int {
	return min(int(at/time.Second), len(r.secs)-1)
}

// dispatch records that the request planned at at was sent, or not sent
// (the in-flight bound was full). The pacer calls it in planned order.
func (r *recorder) dispatch(at time.Duration, notSent bool) {
	i, p := r.secOf(at), r.phaseOf(at)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeBefore(i)
	s := &r.secs[i]
	s.dispatch(notSent)
	r.phaseCount[p].dispatch(notSent)
	r.total.dispatch(notSent)
	r.win.dispatch(notSent)
	if notSent {
		return
	}
	s.pending++
	r.inflight++
}

// done records the outcome of a sent request. It may come before the
// request's dispatch (the pacer counts a request after handing it over), but
// never after a later second's dispatch.
func (r *recorder) done(o outcome) {
	i, p := r.secOf(o.at), r.phaseOf(o.at)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.secs[i]
	s.add(o)
	r.phaseCount[p].add(o)
	r.total.add(o)
	r.win.add(o)
	if s.hist == nil {
		s.hist = r.allocHist()
	}
	recordLatency(s.hist, o.latency)
	recordLatency(r.phaseHist[p], o.latency)
	recordLatency(r.totalHist, o.latency)
	recordLatency(r.win.hist, o.latency)
	if o.latency > SlowAnswer {
		if s.SlowAt == nil {
			s.SlowAt = make([]int64, 10)
		}
		s.SlowAt[(o.at%time.Second)/(time.Second/10)]++
	}
	if o.newConn {
		s.NewConns++
		if o.latency > SlowAnswer {
			s.SlowNewConns++
		}
	}
	if o.servedBy != "" {
		if s.ServedBy == nil {
			s.ServedBy = make(map[string]int64)
		}
		key := o.servedBy
		if _, ok := s.ServedBy[key]; !ok && len(s.ServedBy) >= maxServedBy {
			key = servedByOverflow
		}
		s.ServedBy[key]++
		if o.latency > SlowAnswer {
			if s.SlowBy == nil {
				s.SlowBy = make(map[string]int64)
			}
			s.SlowBy[key]++ // key is one of ServedBy's: bounded as it is
		}
	}
	switch o.cache {
	case cacheHit:
		s.Cache.Hit++
	case cacheStale:
		s.Cache.Stale++
	case cacheMiss:
		s.Cache.Miss++
	case cacheOther:
		s.Cache.Other++
	}
	s.pending--
	r.inflight--
	r.maybeFinal(s)
}

// closeBefore marks seconds before i as complete on the pacer's side.
// r.mu must be held.
func (r *recorder) closeBefore(i int) {
	for ; r.openFrom < i; r.openFrom++ {
		s := &r.secs[r.openFrom]
		s.closed = true
		r.maybeFinal(s)
	}
}

// maybeFinal turns a second's histogram into its Latency once no request of
// that second can still arrive, so that only a few histograms are live at a
// time. r.mu must be held.
func (r *recorder) maybeFinal(s *second) {
	if !s.closed || s.pending > 0 || s.hist == nil {
		return
	}
	s.Latency = latencyOf(s.hist)
	s.hist.Reset()
	r.free = append(r.free, s.hist)
	s.hist = nil
}

func (r *recorder) allocHist() *hdr.Histogram {
	if n := len(r.free); n > 0 {
		h := r.free[n-1]
		r.free = r.free[:n-1]
		return h
	}
	return newHist()
}

// setAdmin stores the admin figures scraped at the end of second i.
func (r *recorder) setAdmin(i int, fetches, replicas *float64) {
	if i < 0 || i >= len(r.secs) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secs[i].OriginFetches = fetches
	r.secs[i].Replicas = replicas
}

// snapshot is the progress since the previous snapshot.
type snapshot struct {
	Counts
	p99      time.Duration
	inflight int
}

func (r *recorder) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{Counts: r.win.Counts, inflight: r.inflight}
	if r.win.hist.TotalCount() > 0 {
		s.p99 = time.Duration(r.win.hist.ValueAtQuantile(99)) * time.Microsecond
	}
	r.win.Counts = Counts{}
	r.win.hist.Reset()
	return s
}

// finish closes every second up to the one planned at end (exclusive) and
// returns the series, the phases and the whole run. Call it once every
// sent request is done.
func (r *recorder) finish(end time.Duration) ([]Second, []Phase, Phase) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(int((end+time.Second-1)/time.Second), len(r.secs))
	r.closeBefore(len(r.secs))
	series := make([]Second, n)
	for i := range series {
		s := &r.secs[i]
		series[i] = s.Second
	}
	phases := make([]Phase, 0, len(r.phases))
	for i, p := range r.phases {
		if p.From >= end && i > 0 {
			break
		}
		p.To = min(p.To, end)
		p.Counts = r.phaseCount[i]
		p.Latency = latencyOf(r.phaseHist[i])
		p.seconds()
		p.addCluster(series)
		phases = append(phases, p)
	}
	total := Phase{Name: "total", From: 0, To: end, Counts: r.total, Latency: latencyOf(r.totalHist)}
	total.seconds()
	total.addCluster(series)
	return series, phases, total
}
