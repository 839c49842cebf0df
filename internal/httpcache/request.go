package httpcache

import "time"

// RequestPolicy is how a node weighs a request's own Cache-Control
// directives (RFC 9111 §5.2.1) against what it stores.
type RequestPolicy struct {
	// Prefresh is the fraction of an entry's lifetime after which a hit
	// also refreshes in the background (see Entry.State).
	Prefresh float64
	// IgnoreClientRevalidate ignores the request directives that only send
	// the cache to the origin sooner: no-cache (and Pragma: no-cache),
	// max-age and min-fresh. A shared cache in front of a fragile origin
	// does this for origin protection, as Varnish and nginx do; RFC 9111
	// asks caches to honour them.
	IgnoreClientRevalidate bool
}

// Action is what to do with a request given what is stored for it.
type Action uint8

const (
	// Serve the entry: it is fresh enough for the request.
	Serve Action = iota
	// ServeRefresh serves the fresh entry and refreshes it in the
	// background: it is past the prefresh point.
	ServeRefresh
	// ServeStale serves the stale entry, with permission (the response's
	// stale-while-revalidate or the operator's grace, or the request's
	// max-stale), and refreshes it in the background.
	ServeStale
	// Revalidate fetches before answering, conditionally when the entry has
	// validators; if the origin fails, the entry may still be served within
	// stale-if-error.
	Revalidate
	// Fetch fetches: nothing is stored.
	Fetch
	// GatewayTimeout answers 504: the request said only-if-cached and
	// nothing stored may answer it (§5.2.1.7).
	GatewayTimeout
)

var actionNames = [...]string{"serve", "serve-refresh", "serve-stale", "revalidate", "fetch", "gateway-timeout"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Decide is the serving decision for a request with directives req (see
// RequestDirectives) and the stored entry e (nil when none) at now.
//
// A request's directives decide only what this request gets: whatever it
// triggers (a revalidation, a refresh) stores a response the origin gave
// for everyone, so one client's directives never change what the cache
// keeps for others beyond making it newer.
//
//   - no-cache (§5.2.1.4): revalidate even a fresh entry.
//   - max-age=N (§5.2.1.1): an entry older than N is revalidated.
//   - min-fresh=N (§5.2.1.3): an entry fresh for less than N more is
//     revalidated.
//   - max-stale[=N] (§5.2.1.2): a stale entry (stale by at most N) may be
//     served, unless the entry forbids stale (Entry.NoStale).
//   - only-if-cached (§5.2.1.7): whatever would need the origin is a 504.
//   - no-store (§5.2.1.5) does not change the decision: a stored response
//     may still answer; the caller must not store the response to it.
//
// Under RequestPolicy.IgnoreClientRevalidate the first three are ignored.
func Decide(req Directives, e *Entry, now time.Time, p RequestPolicy) Action {
	a := decide(req, e, now, p)
	if req.OnlyIfCached && a >= Revalidate {
		return GatewayTimeout
	}
	return a
}

func decide(req Directives, e *Entry, now time.Time, p RequestPolicy) Action {
	if e == nil {
		return Fetch
	}
	age := e.Age(now)
	ttl := e.Lifetime - age
	if !p.IgnoreClientRevalidate {
		if req.NoCache || req.HasMaxAge && age > req.MaxAge || req.HasMinFresh && ttl < req.MinFresh {
			return Revalidate
		}
	}
	switch e.State(now, p.Prefresh) {
	case Fresh:
		return Serve
	case Prefresh:
		return ServeRefresh
	case StaleRevalidate:
		return ServeStale
	}
	if req.HasMaxStale && !e.NoStale && age-e.Lifetime <= req.MaxStale {
		return ServeStale
	}
	return Revalidate
}
