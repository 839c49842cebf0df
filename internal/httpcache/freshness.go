package httpcache

import (
	"net/http"
	"time"
)

// heuristicCap bounds a Last-Modified heuristic lifetime: a day, the age past
// which RFC 7234 asked caches to warn, and the cap Squid and Traffic Server
// use.
const heuristicCap = 24 * time.Hour

// Defaults are node-level choices for responses that say nothing. The zero
// value adds nothing to what responses say.
type Defaults struct {
	// TTL is the freshness lifetime of a heuristically cacheable (or
	// public) response with no explicit freshness (no s-maxage, max-age or
	// Expires) and no Last-Modified: an operator opt-in, beyond RFC 9111.
	// With Last-Modified the lifetime is always the RFC 9111 §4.2.2
	// heuristic, 10% of the time since then, at most a day. Zero (the
	// node's default) leaves responses without either always stale.
	TTL time.Duration
	// StaleWhileRevalidate is used when a response has no
	// stale-while-revalidate directive and does not forbid serving stale.
	StaleWhileRevalidate time.Duration
	// StaleIfError is used, likewise, for stale-if-error.
	StaleIfError time.Duration
	// StaleUnderSMaxAge honours a response's explicit
	// stale-while-revalidate and stale-if-error beside s-maxage (the
	// "s-maxage=60, stale-while-revalidate=300" CDN idiom). RFC 9111
	// §4.2.4 and §5.2.2.10 forbid it: s-maxage implies proxy-revalidate
	// for a shared cache. False (strict) serves such responses stale
	// never.
	StaleUnderSMaxAge bool
}

// Storable reports whether a shared cache may store the response to req
// (RFC 9111 §3). When it may not, reason is one of the fixed tokens
// "method", "status", "no-store", "private", "vary-star", "authorization",
// "set-cookie" or "no-freshness". A nil req skips the request checks. The
// response's directives are ResponseDirectives': CDN-Cache-Control or
// Surrogate-Control take precedence over Cache-Control.
//
//   - Only GET and HEAD responses are storable. The store itself refuses
//     bodyless HEAD entries (see Store.Put): fetch HEAD misses with GET.
//   - Any final status may be stored when the response says how long it is
//     fresh (§3); 206 is not (ranges are served from whole objects), nor is
//     304 (it updates a stored response instead). must-understand
//     restricts storing to the statuses whose semantics crowdpilot
//     implements (200, 203, 204, 300, 301, 302, 303, 307, 308, 403, 404,
//     405, 410, 414, 451, 501) and then overrides no-store (§5.2.2.3).
//   - no-store (request or response) and private (bare or qualified) refuse.
//   - A request with Authorization is stored only when the response says
//     public, s-maxage or must-revalidate (RFC 9111 §3.5).
//   - A response with Set-Cookie is stored only when it says public or
//     s-maxage, and then without its Set-Cookie (Store.Put stores
//     Entry.Shareable), so one client's cookie is never handed to the crowd. RFC 9111 allows storing
//     such responses; every popular shared cache refuses by default, and an
//     origin that marks a page public or gives it s-maxage has said the page
//     itself is shared.
//   - Vary: * never matches a later request, so it is not stored.
//   - The response must carry explicit freshness (s-maxage, max-age,
//     Expires), public, or a heuristically cacheable status (RFC 9110
//     §15.1); no-cache responses qualify and are stored always stale.
func Storable(req *http.Request, status int, h http.Header) (ok bool, reason string) {
	if req != nil && req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false, "method"
	}
	if status < 200 || status > 999 || status == http.StatusPartialContent || status == http.StatusNotModified {
		return false, "status"
	}
	cc := ResponseDirectives(h)
	if cc.MustUnderstand && !understoodStatus(status) {
		return false, "status"
	}
	if cc.NoStore && !(cc.MustUnderstand && understoodStatus(status)) || req != nil && ParseCacheControl(req.Header).NoStore {
		return false, "no-store"
	}
	if cc.Private {
		return false, "private"
	}
	if varyStar(h) {
		return false, "vary-star"
	}
	if req != nil && req.Header.Get("Authorization") != "" && !cc.Public && !cc.HasSMaxAge && !cc.MustRevalidate {
		return false, "authorization"
	}
	if req != nil && req.Header.Get("Cookie") != "" && !cc.Public && !cc.HasSMaxAge {
		return false, "cookie" // a personal page unless the origin says it is shared
	}
	if len(h["Set-Cookie"]) > 0 && !cc.Public && !cc.HasSMaxAge {
		return false, "set-cookie"
	}
	if !cc.HasSMaxAge && !cc.HasMaxAge && (cc.Targeted || len(h["Expires"]) == 0) && !cc.Public && !heuristicallyCacheable(status) {
		return false, "no-freshness"
	}
	return true, ""
}

// understoodStatus reports the final statuses whose caching semantics
// crowdpilot implements (what must-understand asks about).
func understoodStatus(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 302, 303, 307, 308, 403, 404, 405, 410, 414, 451, 501:
		return true
	}
	return false
}

// heuristicallyCacheable reports the statuses RFC 9110 §15.1 makes
// heuristically cacheable, less 206, which is never stored.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// varyStar reports whether the Vary header lists "*".
func varyStar(h http.Header) bool {
	for _, line := range h["Vary"] {
		for i := 0; i < len(line); i++ {
			if line[i] == '*' {
				return true
			}
		}
	}
	return false
}

// lifetime is the freshness lifetime of a stored response with header h
// (RFC 9111 §4.2.1, shared cache): s-maxage, else max-age, else Expires minus
// Date (not under a targeted field), else the heuristic: for heuristically
// cacheable or public responses, 10% of Date minus Last-Modified capped at
// a day (§4.2.2), or without Last-Modified the operator's Defaults.TTL.
// no-cache makes it zero. h must carry a Date (NewEntry adds one when the
// origin sent none).
func lifetime(h http.Header, cc Directives, status int, respTime time.Time, d Defaults) time.Duration {
	if cc.NoCache {
		return 0
	}
	switch {
	case cc.HasSMaxAge:
		return cc.SMaxAge
	case cc.HasMaxAge:
		return cc.MaxAge
	case !cc.Targeted && len(h["Expires"]) > 0:
		exp, err := http.ParseTime(h["Expires"][0])
		if err != nil {
			return 0 // an invalid Expires, such as "0", is in the past (§5.3)
		}
		return clampDelta(exp.Sub(headerTime(h, "Date", respTime)))
	}
	if !cc.Public && !heuristicallyCacheable(status) {
		return 0
	}
	if lm, ok := h["Last-Modified"]; ok && len(lm) > 0 {
		if t, err := http.ParseTime(lm[0]); err == nil {
			return min(clampDelta(headerTime(h, "Date", respTime).Sub(t)/10), heuristicCap)
		}
	}
	return max(d.TTL, 0)
}

// staleWindows returns the stale-while-revalidate and stale-if-error windows.
// must-revalidate, proxy-revalidate and no-cache forbid serving stale: both
// are zero. s-maxage implies proxy-revalidate for a shared cache (RFC 9111
// §5.2.2.10), so with s-maxage the node defaults do not apply, and explicit
// stale-while-revalidate / stale-if-error only under
// Defaults.StaleUnderSMaxAge (the origin's own, more specific, permission in
// the common CDN idiom, a deviation from RFC 9111).
func staleWindows(cc Directives, d Defaults) (swr, sie time.Duration) {
	if cc.MustRevalidate || cc.ProxyRevalidate || cc.NoCache || cc.HasSMaxAge && !d.StaleUnderSMaxAge {
		return 0, 0
	}
	if cc.HasSWR {
		swr = cc.StaleWhileRevalidate
	} else if !cc.HasSMaxAge {
		swr = max(d.StaleWhileRevalidate, 0)
	}
	if cc.HasSIE {
		sie = cc.StaleIfError
	} else if !cc.HasSMaxAge {
		sie = max(d.StaleIfError, 0)
	}
	return swr, sie
}

// headerTime parses the first value of the named date header, or returns def.
func headerTime(h http.Header, name string, def time.Time) time.Time {
	if v := h[name]; len(v) > 0 {
		if t, err := http.ParseTime(v[0]); err == nil {
			return t
		}
	}
	return def
}

// clampDelta limits d to [0, maxDelta].
func clampDelta(d time.Duration) time.Duration {
	return min(max(d, 0), maxDelta)
}

// addSat adds two non-negative durations, saturating instead of overflowing.
func addSat(a, b time.Duration) time.Duration {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}
