package httpcache

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ErrBadTarget is wrapped by the errors of BaseKey for request targets that
// cannot name a cached object.
var ErrBadTarget = errors.New("httpcache: bad request target")

// BaseKey is the canonical cache key for r, "host/path?query":
//
//   - host is r.Host (else r.URL.Host), ASCII-lowercased, without a default
//     port (":80" or ":443"; the scheme is not part of the key, as a node
//     serves one scheme per listener);
//   - path is normalised: dot segments removed (RFC 3986 §5.2.4),
//     percent-encoded unreserved characters decoded, other escapes
//     upper-cased, characters that may not appear raw escaped, and an empty
//     path read as "/";
//   - query parameters are sorted by name, a repeated name keeping its
//     values in the order sent ("?a=2&a=1" and "?a=1&a=2" are different
//     resources to most frameworks), keeping blank values, with the same
//     escaping rules; empty
//     parameters ("a&&b") are dropped, and so is an empty query.
//
// The method is not part of the key: GET and HEAD share it. Reserved
// characters keep the form the client sent ("%2F" and "/" differ, as do "+"
// and "%20"), since origins may tell them apart.
//
// BaseKey returns an error wrapping ErrBadTarget for malformed targets: bad
// percent-encoding, control bytes (raw or escaped) in the host or path, raw
// control bytes in the query, a path that does not start with '/', or an
// opaque URL. It is fuzzed: it never panics and it is idempotent, so the key
// of a request for the key's own path and query is the key.
func BaseKey(r *http.Request) (string, error) {
	if r == nil || r.URL == nil {
		return "", fmt.Errorf("no URL: %w", ErrBadTarget)
	}
	u := r.URL
	if u.Opaque != "" {
		return "", fmt.Errorf("opaque target %q: %w", u.Opaque, ErrBadTarget)
	}
	host := r.Host
	if host == "" {
		host = u.Host
	}
	var arr [256]byte
	b := arr[:0]
	b, err := appendHost(b, host)
	if err != nil {
		return "", err
	}
	pathStart := len(b)
	if u.RawPath != "" && rawPathMatches(u.RawPath, u.Path) || badEscape(u.RawPath) {
		b, err = appendPath(b, u.RawPath, true) // fails on a bad escape
	} else {
		b, err = appendPath(b, u.Path, false)
	}
	if err != nil {
		return "", err
	}
	b = b[:pathStart+len(removeDotSegments(b[pathStart:]))]
	if u.RawQuery != "" {
		b, err = appendQuery(b, u.RawQuery)
		if err != nil {
			return "", err
		}
	}
	return string(b), nil
}

// appendHost appends the lowercased host without a default port.
func appendHost(b []byte, host string) ([]byte, error) {
	start := len(b)
	for i := 0; i < len(host); i++ {
		c := host[i]
		if charClass[c]&classBadHost != 0 {
			return b, fmt.Errorf("host %q: %w", host, ErrBadTarget)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	h := b[start:]
	for _, port := range [...]string{":80", ":443"} {
		if len(h) < len(port) || string(h[len(h)-len(port):]) != port {
			continue
		}
		// Strip only a real port: "a:80:80" and "::80" keep theirs, so
		// stripping is idempotent.
		rest := h[:len(h)-len(port)]
		if bytes.IndexByte(rest, ':') < 0 || len(rest) >= 2 && rest[0] == '[' && rest[len(rest)-1] == ']' {
			b = b[:start+len(rest)]
		}
		break
	}
	return b, nil
}

// rawPathMatches reports whether raw decodes to path, as url.URL.EscapedPath
// checks before trusting RawPath, without allocating.
func rawPathMatches(raw, path string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return false
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if j >= len(path) || path[j] != c {
			return false
		}
		j++
	}
	return j == len(path)
}

// badEscape reports whether s holds a '%' not followed by two hex digits.
func badEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return true
			}
			i += 2
		}
	}
	return false
}

// appendPath appends the normalised path. With encoded set, s is an escaped
// path (RawPath); otherwise it is a decoded path whose original form was the
// default encoding, which Go would have produced with url.PathEscape-like
// rules, so those rules are replayed here.
func appendPath(b []byte, s string, encoded bool) ([]byte, error) {
	if s == "" {
		return append(b, '/'), nil
	}
	if s[0] != '/' {
		return b, fmt.Errorf("path %q does not start with '/': %w", s, ErrBadTarget)
	}
	raw := uint8(classGoRawPath)
	if encoded {
		raw = classRawPath
	}
	for i := 0; i < len(s); {
		// Copy the run of bytes that stay as they are in one go.
		j := i
		for j < len(s) && charClass[s[j]]&raw != 0 {
			j++
		}
		b = append(b, s[i:j]...)
		if j == len(s) {
			break
		}
		c := s[j]
		i = j + 1
		if encoded && c == '%' {
			if j+2 >= len(s) || !isHex(s[j+1]) || !isHex(s[j+2]) {
				return b, fmt.Errorf("path %q: bad percent-encoding: %w", s, ErrBadTarget)
			}
			c = unhex(s[j+1])<<4 | unhex(s[j+2])
			i = j + 3
			if isUnreserved(c) {
				b = append(b, c)
				continue
			}
		}
		if isCTL(c) {
			return b, fmt.Errorf("path %q: control byte: %w", s, ErrBadTarget)
		}
		b = appendEscaped(b, c)
	}
	return b, nil
}

// removeDotSegments removes "." and ".." segments from p, which starts with
// '/', in place (RFC 3986 §5.2.4).
func removeDotSegments(p []byte) []byte {
	if bytes.Index(p, []byte{'/', '.'}) < 0 {
		return p
	}
	out := 0
	for i := 0; i < len(p); {
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		last := j == len(p)
		switch {
		case len(seg) == 1 && seg[0] == '.':
			if last {
				p[out] = '/'
				out++
			}
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			k := out - 1
			for k > 0 && p[k] != '/' {
				k--
			}
			out = max(k, 0)
			if last {
				p[out] = '/'
				out++
			}
		default:
			out += copy(p[out:], p[i:j])
		}
		i = j
	}
	if out == 0 {
		p[0] = '/'
		out = 1
	}
	return p[:out]
}

// param is one query parameter, as offsets into a normalised query.
type param struct{ start, eq, end int }

// appendQuery appends "?" and the sorted, normalised parameters of raw, or
// nothing when raw has no non-empty parameter.
func appendQuery(b []byte, raw string) ([]byte, error) {
	var parr [16]param
	ps := parr[:0]
	start := len(b)
	b = append(b, '?')
	var err error
	for len(raw) > 0 {
		var p string
		p, raw, _ = strings.Cut(raw, "&")
		if p == "" {
			continue
		}
		if len(ps) > 0 {
			b = append(b, '&')
		}
		pstart := len(b)
		// The first raw '=' separates name and value; an escaped one
		// stays escaped, so it never moves.
		name, value, hasEq := strings.Cut(p, "=")
		if b, err = appendQueryPart(b, name); err != nil {
			return b, err
		}
		eq := len(b)
		if hasEq {
			b = append(b, '=')
			if b, err = appendQueryPart(b, value); err != nil {
				return b, err
			}
		}
		ps = append(ps, param{pstart, eq, len(b)})
	}
	if len(ps) == 0 {
		return b[:start], nil
	}
	cmp := func(x, y param) int {
		// By name only: the sort is stable, so a repeated name keeps
		// the order of its values.
		return bytes.Compare(b[x.start:x.eq], b[y.start:y.eq])
	}
	if slices.IsSortedFunc(ps, cmp) {
		return b, nil
	}
	// Sort a copy of the parameters back into place.
	var qarr [256]byte
	q := append(qarr[:0], b[start:]...)
	slices.SortStableFunc(ps, cmp)
	out := b[:start+1]
	for i, p := range ps {
		if i > 0 {
			out = append(out, '&')
		}
		out = append(out, q[p.start-start:p.end-start]...)
	}
	return out, nil
}

// appendQueryPart appends a normalised query parameter name or value.
func appendQueryPart(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && charClass[s[j]]&classRawQuery != 0 {
			j++
		}
		b = append(b, s[i:j]...)
		if j == len(s) {
			break
		}
		c := s[j]
		i = j + 1
		switch {
		case c == '%':
			if j+2 >= len(s) || !isHex(s[j+1]) || !isHex(s[j+2]) {
				return b, fmt.Errorf("query %q: bad percent-encoding: %w", s, ErrBadTarget)
			}
			c = unhex(s[j+1])<<4 | unhex(s[j+2])
			i = j + 3
			if isUnreserved(c) {
				b = append(b, c)
				continue
			}
		case isCTL(c):
			return b, fmt.Errorf("query %q: control byte: %w", s, ErrBadTarget)
		}
		b = appendEscaped(b, c)
	}
	return b, nil
}

// KeyHash is a fast 64-bit hash of a key (xxhash), used by routing and heat.
func KeyHash(key string) uint64 { return xxhash.Sum64String(key) }
