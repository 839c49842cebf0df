package httpcache

import (
	"net/http"
	"strings"
	"time"
)

// maxDelta is the largest delta-seconds value a cache must handle; larger
// values are treated as this one (RFC 9111 §1.2.2).
const maxDelta = (1 << 31) * time.Second

// Directives are the Cache-Control directives crowdpilot understands, from a
// request or a response. Durations are never negative.
type Directives struct {
	// MaxAge and SMaxAge are max-age and s-maxage. A directive that is
	// present with a missing or invalid value sets its Has flag with a zero
	// duration: the response is stale at once (RFC 9111 §4.2.1).
	MaxAge, SMaxAge       time.Duration
	HasMaxAge, HasSMaxAge bool

	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows.
	StaleWhileRevalidate time.Duration
	HasSWR               bool
	StaleIfError         time.Duration
	HasSIE               bool

	// NoCache and Private are set by both their bare and their
	// field-name-qualified forms (no-cache="Set-Cookie"): crowdpilot does not
	// store responses minus some fields, so the qualified form is treated as
	// the whole-response one, the conservative reading.
	NoStore, NoCache, Private, Public, MustRevalidate, ProxyRevalidate, NoTransform, Immutable, OnlyIfCached bool
	// MustUnderstand limits storing to caches that implement the status
	// code's semantics, and then overrides no-store (RFC 9111 §5.2.2.3).
	MustUnderstand bool

	// Targeted is set by ResponseDirectives when the directives came from
	// CDN-Cache-Control or Surrogate-Control rather than Cache-Control:
	// Expires is then ignored too (RFC 9213 §2.1).
	Targeted bool

	// MaxStale and MinFresh are request directives. A bare max-stale accepts
	// any staleness and is reported as 2^31 seconds, the largest
	// delta-seconds a cache must handle; larger values saturate there too.
	MaxStale    time.Duration
	HasMaxStale bool
	MinFresh    time.Duration
	HasMinFresh bool
}

// ParseCacheControl parses all Cache-Control field lines of h as one
// comma-separated list. It is tolerant of junk: unknown or malformed
// directives are ignored, names are case-insensitive, values may be tokens or
// quoted strings, and whitespace around '=' is accepted. When a directive with
// a duration appears more than once the first occurrence wins (RFC 9111
// §4.2.1); an invalid or negative max-age or s-maxage counts as zero, so the
// response is stale. ParseCacheControl never panics (it is fuzzed) and never
// allocates.
func ParseCacheControl(h http.Header) Directives {
	var d Directives
	for _, line := range h["Cache-Control"] {
		parseDirectives(line, &d)
	}
	return d
}

// SurrogateDevice is the device token crowdpilot answers to in
// Surrogate-Control (Edge Architecture Specification 1.0, §2.2), and
// SurrogateCapability the Surrogate-Capability request field that tells
// the origin so (§2.1). Every origin request carries it, in place of
// whatever a client sent.
const (
	SurrogateDevice     = "crowdpilot"
	SurrogateCapability = SurrogateDevice + `="Surrogate/1.0"`
)

// ResponseDirectives returns the directives a shared cache obeys for a
// response: those of CDN-Cache-Control (RFC 9213) when it holds any
// directive, else those of Surrogate-Control (Edge Architecture 1.0), else
// Cache-Control. A targeted field replaces Cache-Control (and Expires)
// entirely; one that is empty or holds nothing understood is ignored. Of
// Surrogate-Control, directives targeted at SurrogateDevice
// ("max-age=60;crowdpilot") are used when there are any, else those
// targeted at no device; those targeted at other devices never are (§2.2).
func ResponseDirectives(h http.Header) Directives {
	if d := targetedDirectives(h["Cdn-Cache-Control"], false); d != (Directives{}) {
		d.Targeted = true
		return d
	}
	if d := targetedDirectives(h["Surrogate-Control"], true); d != (Directives{}) {
		d.Targeted = true
		return d
	}
	return ParseCacheControl(h)
}

// targetedDirectives parses the lines of a targeted field; device reads
// Surrogate-Control's ";device" targets.
func targetedDirectives(lines []string, device bool) Directives {
	var d Directives
	if !device {
		for _, line := range lines {
			parseDirectives(line, &d)
		}
		return d
	}
	ours := false
	for _, line := range lines {
		for m := range members(line) {
			if _, target, ok := strings.Cut(m, ";"); ok && strings.EqualFold(strings.Trim(target, " \t"), SurrogateDevice) {
				ours = true
			}
		}
	}
	for _, line := range lines {
		for m := range members(line) {
			directive, target, targeted := strings.Cut(m, ";")
			if targeted == ours && (!targeted || strings.EqualFold(strings.Trim(target, " \t"), SurrogateDevice)) {
				parseDirectives(directive, &d)
			}
		}
	}
	return d
}

// members yields the comma-separated members of a field line; commas inside
// quoted strings do not separate.
func members(s string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		start, quoted := 0, false
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && quoted:
				i++
			case c == '"':
				quoted = !quoted
			case c == ',' && !quoted:
				if !yield(s[start:i]) {
					return
				}
				start = i + 1
			}
		}
		yield(s[start:])
	}
}

// RequestDirectives returns a request's Cache-Control directives, with
// Pragma: no-cache read as no-cache when the request has no Cache-Control
// (RFC 9111 §5.4).
func RequestDirectives(h http.Header) Directives {
	d := ParseCacheControl(h)
	if len(h["Cache-Control"]) == 0 {
		for _, line := range h["Pragma"] {
			for f := range strings.SplitSeq(line, ",") {
				if strings.EqualFold(strings.TrimSpace(f), "no-cache") {
					d.NoCache = true
				}
			}
		}
	}
	return d
}

// parseDirectives adds the directives of one field line to d.
func parseDirectives(s string, d *Directives) {
	i := 0
	for i < len(s) {
		// Skip separators and whitespace before a name.
		for i < len(s) && (s[i] == ',' || s[i] == ' ' || s[i] == '\t') {
			i++
		}
		start := i
		for i < len(s) && s[i] != ',' && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		name := s[start:i]
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var value string
		hasValue := false
		if i < len(s) && s[i] == '=' {
			hasValue = true
			i++
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			value, i = scanValue(s, i)
		}
		// Whatever follows the directive up to the next comma is junk.
		for i < len(s) && s[i] != ',' {
			i++
		}
		if name != "" {
			apply(d, name, value, hasValue)
		}
	}
}

// scanValue reads a token or a quoted string starting at s[i] and returns it
// (without quotes) and the index after it. An unterminated quoted string runs
// to the end of s.
func scanValue(s string, i int) (string, int) {
	if i < len(s) && s[i] == '"' {
		i++
		start := i
		for i < len(s) {
			switch s[i] {
			case '\\':
				i += 2
				continue
			case '"':
				return s[start:i], i + 1
			}
			i++
		}
		return s[start:], len(s)
	}
	start := i
	for i < len(s) && s[i] != ',' && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	return s[start:i], i
}

// apply records one directive in d. Duration directives keep their first
// occurrence.
func apply(d *Directives, name, value string, hasValue bool) {
	switch {
	case strings.EqualFold(name, "max-age"):
		if !d.HasMaxAge {
			d.HasMaxAge = true
			d.MaxAge, _ = parseDelta(value, hasValue)
		}
	case strings.EqualFold(name, "s-maxage"):
		if !d.HasSMaxAge {
			d.HasSMaxAge = true
			d.SMaxAge, _ = parseDelta(value, hasValue)
		}
	case strings.EqualFold(name, "stale-while-revalidate"):
		if !d.HasSWR {
			d.HasSWR = true
			d.StaleWhileRevalidate, _ = parseDelta(value, hasValue)
		}
	case strings.EqualFold(name, "stale-if-error"):
		if !d.HasSIE {
			d.HasSIE = true
			d.StaleIfError, _ = parseDelta(value, hasValue)
		}
	case strings.EqualFold(name, "max-stale"):
		if !d.HasMaxStale {
			d.HasMaxStale = true
			if hasValue {
				d.MaxStale, _ = parseDelta(value, true)
			} else {
				d.MaxStale = maxDelta
			}
		}
	case strings.EqualFold(name, "min-fresh"):
		if !d.HasMinFresh {
			d.HasMinFresh = true
			d.MinFresh, _ = parseDelta(value, hasValue)
		}
	case strings.EqualFold(name, "no-store"):
		d.NoStore = true
	case strings.EqualFold(name, "no-cache"):
		d.NoCache = true
	case strings.EqualFold(name, "private"):
		d.Private = true
	case strings.EqualFold(name, "public"):
		d.Public = true
	case strings.EqualFold(name, "must-revalidate"):
		d.MustRevalidate = true
	case strings.EqualFold(name, "proxy-revalidate"):
		d.ProxyRevalidate = true
	case strings.EqualFold(name, "no-transform"):
		d.NoTransform = true
	case strings.EqualFold(name, "immutable"):
		d.Immutable = true
	case strings.EqualFold(name, "only-if-cached"):
		d.OnlyIfCached = true
	case strings.EqualFold(name, "must-understand"):
		d.MustUnderstand = true
	}
}

// parseDelta parses delta-seconds (RFC 9111 §1.2.2): one or more digits,
// saturating at maxDelta. Anything else yields 0 and false.
func parseDelta(s string, present bool) (time.Duration, bool) {
	if !present || s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<31 {
			n = n*10 + int64(c-'0')
		}
	}
	if n >= 1<<31 {
		return maxDelta, true
	}
	return time.Duration(n) * time.Second, true
}
