package httpcache

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// entryOverhead approximates the memory of an Entry beyond its strings and
// body: the struct, the header map and its slices, and the store's node.
const (
	entryOverhead  = 640
	headerOverhead = 48 // per header name: map slot and value slice
	valueOverhead  = 16 // per header value: string header
)

// An Entry is one stored response. It is immutable once stored: revalidation
// and soft purges make a new Entry, so readers may use one without locks.
type Entry struct {
	Key     string // variant key it is stored under (BaseKey when no Vary)
	BaseKey string
	Status  int
	// Header holds the end-to-end headers as received, minus hop-by-hop
	// and Connection-listed fields, the purge tag fields (see Tags) and
	// fields this cluster sets per response (Age, Cache-Status,
	// X-Served-By). Set-Cookie is kept here, for the one client whose
	// request fetched the response, but never stored (see Shareable). NewEntry adds Date when the origin sent
	// none, sets Content-Length to len(Body) for statuses with a body, and
	// stores a nil Content-Type when the origin sent none, which stops
	// net/http from sniffing one. Value slices are shared by every response
	// served from the entry: replace them, never write into them.
	Header                    http.Header
	Body                      []byte
	RequestTime, ResponseTime time.Time
	InitialAge                time.Duration // RFC 9111 §4.2.3 corrected_initial_age
	Lifetime                  time.Duration // freshness lifetime (0 = always stale, e.g. no-cache)
	// SWR and SIE are the stale windows after Lifetime, from the
	// stale-while-revalidate and stale-if-error directives or else from
	// Defaults. Both are 0 under must-revalidate, proxy-revalidate or
	// no-cache; under s-maxage, which implies proxy-revalidate for a
	// shared cache, only the explicit directives count, and only with
	// Defaults.StaleUnderSMaxAge.
	SWR, SIE time.Duration
	// NoStale forbids serving the entry stale on a client's max-stale:
	// must-revalidate, proxy-revalidate, no-cache or s-maxage (which
	// implies proxy-revalidate for a shared cache, RFC 9111 §5.2.2.10).
	NoStale            bool
	ETag, LastModified string
	Vary               []string // canonical header names from Vary, sorted, distinct
	Tags               []string // from Surrogate-Key (space separated) and Cache-Tag (comma separated), distinct
	// Near, when set, marks a near copy: an entry a router keeps of a hot
	// object it does not own, filled from the object's replica set (never
	// the origin), which the store drops at Near. Zero for every other
	// entry.
	Near time.Time
	// Reserve, with Near, marks a reserve rather than a near copy: what a
	// router kept of an object it relayed while the object was not hot
	// there. It is never served fresh (R(k) answers for the object then);
	// within stale-while-revalidate it is, while the router revalidates it
	// from R(k) once, so a crowd at expiry is answered where it lands.
	// Counted against StoreConfig.MaxReserveBytes, not MaxNearBytes.
	Reserve bool

	size   int64 // Size, computed by NewEntry; 0 in hand-built entries
	marker bool  // a Vary marker in the store, not a response
	head   bool  // built from a HEAD response, so Body is not the object
}

// hopByHop are the fields that describe one connection (RFC 9110 §7.6.1),
// plus Proxy-Connection, still sent by some clients.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// notStored are end-to-end fields the entry keeps elsewhere or that belong to
// a single response.
var notStored = [...]string{"Surrogate-Key", "Cache-Tag", "Age", "Cache-Status", "X-Served-By"}

// NewEntry builds the entry for a response with status, header h and body to
// req (which may be nil), fetched between reqTime and respTime, to be stored
// under key. An empty key means the entry's own: base, or for a response with
// Vary, VariantKey(base, e.Vary, req.Header). NewEntry does not judge
// storability (see Storable) and keeps body: the caller must not modify it
// afterwards. Header values are copied.
func NewEntry(base, key string, req *http.Request, status int, h http.Header, body []byte, reqTime, respTime time.Time, d Defaults) *Entry {
	e := &Entry{
		Key:          key,
		BaseKey:      base,
		Status:       status,
		Body:         body,
		RequestTime:  reqTime,
		ResponseTime: respTime,
		head:         req != nil && req.Method == http.MethodHead,
	}
	e.Header = storedHeader(h, nil)
	if len(e.Header["Date"]) == 0 {
		// A recipient with a clock adds Date when caching (RFC 9110 §6.6.1).
		e.Header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	e.Tags = parseTags(h, nil)
	e.Vary = parseVary(h)
	if e.Key == "" {
		var reqHeader http.Header
		if req != nil {
			reqHeader = req.Header
		}
		e.Key = VariantKey(base, e.Vary, reqHeader)
	}
	e.fill(h, d)
	if !bodyAllowed(status) {
		delete(e.Header, "Content-Length")
	} else {
		if !e.head {
			e.Header["Content-Length"] = []string{itoa(int64(len(body)))}
		}
		if _, ok := e.Header["Content-Type"]; !ok {
			e.Header["Content-Type"] = nil
		}
	}
	e.size = e.computeSize()
	return e
}

// fill computes the fields that derive from Header and the times; resp is
// the header of the response just received, for its Age.
func (e *Entry) fill(resp http.Header, d Defaults) {
	cc := ResponseDirectives(e.Header)
	e.NoStale = cc.MustRevalidate || cc.ProxyRevalidate || cc.NoCache || cc.HasSMaxAge
	e.ETag = e.Header.Get("Etag")
	e.LastModified = e.Header.Get("Last-Modified")
	age, ageOK := ageValue(resp["Age"])
	e.InitialAge = initialAge(e.Header.Get("Date"), age, e.RequestTime, e.ResponseTime)
	e.Lifetime = lifetime(e.Header, cc, e.Status, e.ResponseTime, d)
	if !ageOK {
		e.Lifetime = 0 // of unknown age: stale until revalidated, as an invalid Expires
	}
	e.SWR, e.SIE = staleWindows(cc, d)
}

// storedHeader copies h without the fields an entry does not keep, over the
// existing fields of dst (a new header when nil).
func storedHeader(h, dst http.Header) http.Header {
	if dst == nil {
		dst = make(http.Header, len(h))
	}
	for k, v := range h {
		if notStoredField(k, h) {
			continue
		}
		dst[k] = slices.Clip(slices.Clone(v))
	}
	return dst
}

// notStoredField reports whether field k of h is hop-by-hop, listed in
// Connection, or one of notStored.
func notStoredField(k string, h http.Header) bool {
	if slices.Contains(hopByHop[:], k) || slices.Contains(notStored[:], k) {
		return true
	}
	for _, line := range h["Connection"] {
		for f := range strings.SplitSeq(line, ",") {
			if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
		}
	}
	return false
}

// parseTags returns the distinct tags of Surrogate-Key (space separated) and
// Cache-Tag (comma separated), or def when h has neither field.
func parseTags(h http.Header, def []string) []string {
	sk, ct := h["Surrogate-Key"], h["Cache-Tag"]
	if len(sk) == 0 && len(ct) == 0 {
		return def
	}
	var tags []string
	for _, line := range sk {
		tags = append(tags, strings.Fields(line)...)
	}
	for _, line := range ct {
		for t := range strings.SplitSeq(line, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	slices.Sort(tags)
	return slices.Clip(slices.Compact(tags))
}

// parseVary returns the canonical, sorted, distinct field names of Vary.
func parseVary(h http.Header) []string {
	var names []string
	for _, line := range h["Vary"] {
		for f := range strings.SplitSeq(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Clip(slices.Compact(names))
}

// ageValue is the age_value of a response's Age field lines (RFC 9111
// §5.1), and whether the cache could read one. Of a list on one line the
// first member counts (§5.1); values past 2^31 saturate there. The age is
// unknown (ok false) when that member is not a non-negative integer
// (negative, fractional, a parameter, not a number) or the field has
// several lines: §5.1 lets a cache ignore such a field, but then a response
// that an upstream cache held for an hour would look new, and a singleton
// sent twice is read differently by recipients that take the first line
// and those that take the last. A response of unknown age is treated as
// stale (§4.2.1: "Caches are encouraged to consider responses that have
// invalid freshness information to be stale"): it is stored and
// revalidated before reuse, which a cache may always do.
func ageValue(lines []string) (age time.Duration, ok bool) {
	switch len(lines) {
	case 0:
		return 0, true
	case 1:
	default:
		return 0, false
	}
	v := lines[0]
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return parseDelta(strings.Trim(v, " \t"), true)
}

// initialAge is corrected_initial_age (RFC 9111 §4.2.3) for a response with
// the given Date and age_value: the larger of its apparent age (response
// time minus Date) and its age_value plus the response delay.
//
// Date has a resolution of one second: a response dated X was generated
// within [X, X+1s). Counting its apparent age from X, as if it had been
// generated at the very start of its second, ages every response by up to
// a second it did not spend anywhere; with max-age=2 a copy fetched at
// X.8 would already be 0.8 s old, and a refresh before its expiry would
// come back dated a second early, costing the origin a fetch every second
// instead of every two. So the apparent age is counted from the end of
// Date's second: the least age the header proves. A Date further in the
// past (a copy held by an upstream cache, or clock skew) still ages the
// response, less that second; the response delay (below) still counts.
func initialAge(date string, ageValue time.Duration, reqTime, respTime time.Time) time.Duration {
	apparent := time.Duration(0)
	if t, err := http.ParseTime(date); err == nil {
		apparent = max(respTime.Sub(t.Add(time.Second)), 0)
	}
	delay := max(respTime.Sub(reqTime), 0)
	return max(apparent, addSat(ageValue, delay))
}

// Age is the entry's current_age at now (RFC 9111 §4.2.3): InitialAge plus
// the time resident in the cache.
func (e *Entry) Age(now time.Time) time.Duration {
	return addSat(e.InitialAge, max(now.Sub(e.ResponseTime), 0))
}

// TTL is Lifetime minus Age: the remaining freshness, negative when stale.
func (e *Entry) TTL(now time.Time) time.Duration {
	return e.Lifetime - e.Age(now)
}

// State is where an entry is in its life.
type State uint8

const (
	// Fresh entries are served as they are.
	Fresh State = iota
	// Prefresh entries are fresh but past the prefresh point: serve them
	// and refresh in the background.
	Prefresh
	// StaleRevalidate entries are stale within stale-while-revalidate:
	// serve them and refresh in the background.
	StaleRevalidate
	// StaleError entries are stale beyond stale-while-revalidate but within
	// stale-if-error: serve them only when the origin fails.
	StaleError
	// Expired entries must not be served without revalidation.
	Expired
)

var stateNames = [...]string{"fresh", "prefresh", "stale-revalidate", "stale-error", "expired"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// State returns the entry's state at now. prefresh is the fraction of
// Lifetime after which a fresh entry is Prefresh (0.9 in the design); values
// outside (0, 1) disable prefresh.
func (e *Entry) State(now time.Time, prefresh float64) State {
	age := e.Age(now)
	if ttl := e.Lifetime - age; ttl > 0 {
		if prefresh > 0 && prefresh < 1 && float64(age) >= prefresh*float64(e.Lifetime) {
			return Prefresh
		}
		return Fresh
	}
	stale := age - e.Lifetime
	switch {
	case stale < e.SWR:
		return StaleRevalidate
	case stale < e.SIE:
		return StaleError
	}
	return Expired
}

// notUpdated are the fields a 304 never replaces (RFC 9111 §3.2): those
// that describe the stored content rather than the response (its length,
// range, content coding and digests: §3.2 lets a cache keep them "to assure
// integrity of the stored response", and a 304 carries no content they
// could describe), and Vary, which the entry's key depends on.
var notUpdated = [...]string{"Content-Length", "Content-Range", "Content-Encoding", "Content-Md5", "Content-Digest", "Repr-Digest", "Vary"}

// Revalidated returns a copy of e freshened by a 304 response with header h,
// received between reqTime and respTime (RFC 9111 §4.3.4). The 304's fields
// replace the stored ones, except notUpdated and the fields NewEntry never
// stores; its purge tags replace the entry's when it carries Surrogate-Key
// or Cache-Tag. Age, lifetime and stale windows are computed again from the
// merged header and the new times. The body is shared. A 304 whose
// validator does not select e (SelectedBy) updates nothing: the copy is e
// as it was, still stale.
func (e *Entry) Revalidated(h http.Header, reqTime, respTime time.Time, d Defaults) *Entry {
	ne := *e
	if !e.SelectedBy(h) {
		return &ne
	}
	ne.Header = e.Header.Clone()
	upd := h.Clone()
	for _, k := range notUpdated {
		delete(upd, k)
	}
	storedHeader(upd, ne.Header)
	if len(h["Date"]) == 0 {
		ne.Header["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	ne.Tags = parseTags(h, e.Tags)
	ne.RequestTime, ne.ResponseTime = reqTime, respTime
	ne.fill(h, d)
	ne.size = ne.computeSize()
	return &ne
}

// SelectedBy reports whether a 304 with header h identifies e for update
// (RFC 9111 §4.3.4): its strong ETag equals e's (strong comparison, RFC
// 9110 §8.8.3.2), or its weak one matches e's weakly; without an ETag, its
// Last-Modified equals e's; a 304 with neither validator selects e (the one
// stored response the conditional request was made from). A 304 whose
// validator matches nothing "MUST NOT" update the stored response.
func (e *Entry) SelectedBy(h http.Header) bool {
	if et := strings.Trim(h.Get("Etag"), " \t"); et != "" {
		if weak, ok := strings.CutPrefix(et, "W/"); ok {
			return opaqueTag(e.ETag) == weak
		}
		return !strings.HasPrefix(e.ETag, "W/") && e.ETag == et
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		if lm == e.LastModified {
			return true
		}
		t1, err1 := http.ParseTime(lm)
		t2, err2 := http.ParseTime(e.LastModified)
		return err1 == nil && err2 == nil && t1.Equal(t2)
	}
	return true
}

// opaqueTag is an entity tag without its weakness indicator.
func opaqueTag(tag string) string {
	return strings.TrimPrefix(tag, "W/")
}

// Shareable returns e as it may be served to other clients than the one whose
// request fetched it: e itself, or when e carries Set-Cookie, a copy without
// it, so that one client's cookie is never handed to another. Store.Put
// stores the shareable form; callers that hand one fetched entry to several
// waiting clients should do the same.
func (e *Entry) Shareable() *Entry {
	if _, ok := e.Header["Set-Cookie"]; !ok {
		return e
	}
	ne := *e
	ne.Header = e.Header.Clone()
	delete(ne.Header, "Set-Cookie")
	ne.size = ne.computeSize()
	return &ne
}

// stale returns a copy of e that is stale at now, or e when it already is.
func (e *Entry) stale(now time.Time) *Entry {
	age := e.Age(now)
	if e.Lifetime <= age {
		return e
	}
	ne := *e
	ne.Lifetime = age
	return &ne
}

// Size is the entry's weight in the store: the body, header, key and tag
// bytes plus a fixed overhead for the structures that hold them.
func (e *Entry) Size() int64 {
	if e.size > 0 {
		return e.size
	}
	return e.computeSize()
}

func (e *Entry) computeSize() int64 {
	n := int64(entryOverhead + len(e.Body) + len(e.Key) + len(e.ETag) + len(e.LastModified))
	if e.BaseKey != e.Key {
		n += int64(len(e.BaseKey))
	}
	for k, vs := range e.Header {
		n += int64(headerOverhead + len(k))
		for _, v := range vs {
			n += int64(valueOverhead + len(v))
		}
	}
	for _, t := range e.Tags {
		n += int64(valueOverhead + len(t))
	}
	for _, v := range e.Vary {
		n += int64(valueOverhead + len(v))
	}
	return n
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// itoa formats a non-negative integer.
func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
