package httpcache

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// MaxRanges bounds the ranges one request may ask for. A request with more
// (after coalescing) is answered 200 with the whole object, as RFC 9110
// §14.2 allows for a request that looks like an attack: a few thousand
// tiny ranges would cost far more CPU than the object.
const MaxRanges = 16

// rangeGap is the gap below which two ranges are coalesced: about the
// overhead of one more part of a multipart/byteranges response.
const rangeGap = 80

// limitRanges returns r, or a copy of r whose Range header asks for the
// same bytes in at most MaxRanges coalesced ranges (overlapping, adjacent
// and nearly adjacent ones merged, in ascending order), or none at all.
// A Range it cannot parse is left to http.ServeContent (ignored or 416).
func limitRanges(r *http.Request, size int64) *http.Request {
	v := r.Header.Get("Range")
	if v == "" {
		return r
	}
	nv, ok := boundRanges(v, size)
	if !ok || nv == v {
		return r
	}
	r2 := *r
	r2.Header = r.Header.Clone()
	if nv == "" {
		r2.Header.Del("Range")
	} else {
		r2.Header.Set("Range", nv)
	}
	return &r2
}

type byteRange struct{ start, end int64 } // inclusive

// boundRanges rewrites a Range value for an object of size bytes: "" means
// serve the whole object. ok is false when v is not a byte-range set this
// code can read, or none of its ranges is satisfiable (then ServeContent
// answers as it would).
func boundRanges(v string, size int64) (string, bool) {
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || size <= 0 {
		return "", false
	}
	// Parse at most a bounded number of specs: past it the answer is the
	// whole object whatever the rest says.
	var rs []byteRange
	n := 0
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n++
		if n > 4*MaxRanges {
			return "", true
		}
		first, last, ok := strings.Cut(part, "-")
		if !ok {
			return "", false
		}
		var br byteRange
		switch {
		case first == "":
			k, err := strconv.ParseInt(last, 10, 64)
			if err != nil || k < 0 {
				return "", false
			}
			if k == 0 {
				continue // unsatisfiable
			}
			br = byteRange{max(size-k, 0), size - 1}
		default:
			s, err := strconv.ParseInt(first, 10, 64)
			if err != nil || s < 0 {
				return "", false
			}
			e := size - 1
			if last != "" {
				if e, err = strconv.ParseInt(last, 10, 64); err != nil || e < s {
					return "", false
				}
			}
			if s >= size {
				continue // unsatisfiable
			}
			br = byteRange{s, min(e, size-1)}
		}
		rs = append(rs, br)
	}
	if len(rs) == 0 {
		return "", false
	}
	slices.SortFunc(rs, func(a, b byteRange) int { return cmp.Compare(a.start, b.start) })
	out := rs[:1]
	for _, br := range rs[1:] {
		cur := &out[len(out)-1]
		if br.start <= cur.end+1+rangeGap {
			cur.end = max(cur.end, br.end)
			continue
		}
		out = append(out, br)
	}
	if len(out) > MaxRanges {
		return "", true
	}
	var b strings.Builder
	b.WriteString("bytes=")
	for i, br := range out {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(br.start, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(br.end, 10))
	}
	return b.String(), true
}
