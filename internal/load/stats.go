package load

import (
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: 1 µs to 60 s at 3 significant figures.
const (
	histMin     = 1
	histMax     = 60_000_000
	histSigFigs = 3
)

// maxServedBy bounds the distinct X-Served-By values counted per second;
// the rest are counted under servedByOverflow.
const (
	maxServedBy      = 64
	servedByOverflow = "(other)"
)

// SlowAnswer is the latency past which an answer counts in Second.SlowBy.
const SlowAnswer = 20 * time.Millisecond

func newHist() *hdr.Histogram { return hdr.New(histMin, histMax, histSigFigs) }

// Errors counts the cluster's failures among the requests sent, by kind. A
// 503 is counted both in Status5xx and Status503; the other kinds are
// disjoint. Requests the generator never sent are not here: see
// Counts.NotSent.
type Errors struct {
	Status4xx int64 `json:"status_4xx"`
	Status5xx int64 `json:"status_5xx"`
	Status503 int64 `json:"status_503"`
	Timeout   int64 `json:"timeout"`   // no answer within --timeout, or cut at the end of the drain
	Transport int64 `json:"transport"` // connection refused or reset, malformed response...
}

// Total is the number of sent requests the cluster failed.
func (e Errors) Total() int64 {
	return e.Status4xx + e.Status5xx + e.Timeout + e.Transport
}

// Counts are the request counts of a second or a phase. Scheduled splits
// into what the generator itself failed to send (NotSent) and what it sent;
// the sent requests split into OK and the cluster's Errors.
type Counts struct {
	Scheduled int64 `json:"scheduled"` // due by the schedule: Sent + NotSent
	// NotSent is the generator's own failure, not the cluster's: requests
	// due while --max-inflight requests were still outstanding, so never
	// put on the wire.
	NotSent  int64  `json:"not_sent"`
	Sent     int64  `json:"sent"`     // put on the wire
	Answered int64  `json:"answered"` // got a complete HTTP response, any status
	OK       int64  `json:"ok"`       // status 1xx-3xx
	Errors   Errors `json:"cluster_errors"`
}

// SuccessRate is OK / Scheduled, end to end: the generator's own failures
// count against it (1 when nothing was scheduled).
func (c Counts) SuccessRate() float64 {
	if c.Scheduled == 0 {
		return 1
	}
	return float64(c.OK) / float64(c.Scheduled)
}

// ClusterSuccessRate is OK / Sent: how the cluster answered what it was
// actually sent (1 when nothing was sent).
func (c Counts) ClusterSuccessRate() float64 {
	if c.Sent == 0 {
		return 1
	}
	return float64(c.OK) / float64(c.Sent)
}

// Latency summarises a histogram, in milliseconds. Every sent request is in
// it, errors included, measured from its planned send time.
type Latency struct {
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p99_9_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func latencyOf(h *hdr.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count:  h.TotalCount(),
		P50Ms:  ms(h.ValueAtQuantile(50)),
		P99Ms:  ms(h.ValueAtQuantile(99)),
		P999Ms: ms(h.ValueAtQuantile(99.9)),
		MaxMs:  ms(h.Max()),
	}
}

func recordLatency(h *hdr.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(d.Microseconds(), histMin), histMax)) // cannot fail once clamped
}

// Second is one second of the run. Requests belong to the second in which
// they were planned to be sent, whenever they completed; the admin figures
// belong to the second in which they were scraped.
type Second struct {
	T       int     `json:"t"`       // seconds since the start
	Planned float64 `json:"planned"` // requests the schedule plans in this second
	Counts
	Latency  Latency          `json:"latency"`
	ServedBy map[string]int64 `json:"served_by,omitempty"` // by X-Served-By
	// SlowBy counts the answers slower than SlowAnswer by X-Served-By:
	// which node a bad second's tail came from.
	SlowBy map[string]int64 `json:"slow_by,omitempty"`
	// SlowAt counts the answers slower than SlowAnswer by the tenth of the
	// second they were planned in (10 counts, nil when none was slow):
	// when, within a bad second, its tail was planned.
	SlowAt []int64 `json:"slow_at,omitempty"`
	// NewConns counts the answers that came over a connection the generator
	// dialed for them (none idle in its pool), SlowNewConns those of them
	// slower than SlowAnswer: a tail on new connections is the cost of
	// accepting a crowd's connections, on either side.
	NewConns     int64       `json:"new_conns,omitempty"`
	SlowNewConns int64       `json:"slow_new_conns,omitempty"`
	Cache        CacheCounts `json:"cache"`
	// OriginFetches is the increase of crowdpilot_origin_fetches_total over
	// this second, summed over the admins that answered both scrapes; nil
	// when none did.
	OriginFetches *float64 `json:"origin_fetches"`
	// Replicas is crowdpilot_autopilot_replicas_active for the hot objects,
	// summed over the admins at the end of this second; nil when absent.
	Replicas *float64 `json:"replicas_active"`
}

// outcome is what happened to one planned request.
type outcome struct {
	at       time.Duration // planned send time
	status   int           // 0 without a complete response
	timeout  bool          // without status: no answer in time (else a transport error)
	latency  time.Duration // from the planned send time
	servedBy string
	cache    cacheClass
	newConn  bool // over a connection dialed for it
}

func (c *Counts) add(o outcome) {
	switch {
	case o.status != 0:
		c.Answered++
		switch {
		case o.status < 400:
			c.OK++
		case o.status < 500:
			c.Errors.Status4xx++
		default:
			c.Errors.Status5xx++
			if o.status == 503 {
				c.Errors.Status503++
			}
		}
	case o.timeout:
		c.Errors.Timeout++
	default:
		c.Errors.Transport++
	}
}

func (c *Counts) dispatch(notSent bool) {
	c.Scheduled++
	if notSent {
		c.NotSent++
	} else {
		c.Sent++
	}
}
