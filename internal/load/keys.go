package load

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// CataloguePath is the path of catalogue object n (rank 0 is the most
// popular).
func CataloguePath(n uint64) string { return "/obj/" + strconv.FormatUint(n, 10) }

// A Mix picks the path of each request: baseline traffic follows a Zipf
// catalogue, and during the crowd the extra (multiplier-1)×base requests go
// to the hot objects. With no hot objects the crowd follows the catalogue
// too. A Mix is not safe for concurrent use.
type Mix struct {
	sched Schedule
	hot   []string
	rng   *rand.Rand
	zipf  *rand.Zipf
}

// NewMix returns a Mix over keys catalogue objects with Zipf exponent s (> 1)
// and the given hot paths, seeded so that runs repeat.
func NewMix(sched Schedule, keys int, s float64, hot []string, seed uint64) (*Mix, error) {
	if keys < 1 {
		return nil, fmt.Errorf("keys %d: want ≥ 1", keys)
	}
	if !(s > 1) {
		return nil, fmt.Errorf("zipf exponent %v: want > 1", s)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &Mix{
		sched: sched,
		hot:   hot,
		rng:   rng,
		zipf:  rand.NewZipf(rng, s, 1, uint64(keys-1)),
	}, nil
}

// Path returns the path for a request planned at t.
func (m *Mix) Path(t time.Duration) string {
	if len(m.hot) > 0 {
		if mult := m.sched.Multiplier(t); mult > 1 && m.rng.Float64() < (mult-1)/mult {
			return m.hot[m.rng.IntN(len(m.hot))]
		}
	}
	return CataloguePath(m.zipf.Uint64())
}

// NewTargeter returns a vegeta.Targeter that fills each target with a GET of
// the next base URL, round robin, and the path mix picks for the planned
// time at() returns. It is safe for concurrent use, as vegeta's Attacker
// needs (it calls the Targeter from its workers), provided mix is used by
// nothing else. A host other than "" is every request's Host header (a
// site of a cluster fronting several).
func NewTargeter(bases []*url.URL, mix *Mix, at func() time.Duration, host string) vegeta.Targeter {
	header := http.Header{"User-Agent": {"crowdpilot-load"}}
	if host != "" {
		header["Host"] = []string{host} // vegeta sets the request's Host from it
	}
	var mu sync.Mutex // guards next and mix
	next := 0
	return func(t *vegeta.Target) error {
		if len(bases) == 0 {
			return vegeta.ErrNoTargets
		}
		mu.Lock()
		defer mu.Unlock()
		base := bases[next]
		next = (next + 1) % len(bases)
		u := *base
		u.Path = joinPath(base.Path, mix.Path(at()))
		u.RawPath = ""
		*t = vegeta.Target{Method: http.MethodGet, URL: u.String(), Header: header}
		return nil
	}
}

// joinPath puts p under the base URL's path prefix, if any.
func joinPath(prefix, p string) string {
	for len(prefix) > 0 && prefix[len(prefix)-1] == '/' {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + p
}
