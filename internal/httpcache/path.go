package httpcache

import "strings"

// KeyTarget splits a base key ("host/path?query", see BaseKey) into the
// escaped path and the raw query it names. A node sends exactly these
// upstream, so the origin receives what is keyed: dot segments already
// removed, "%2F" still "%2F", parameters in key order. ok is false for a
// string that is not a base key.
func KeyTarget(key string) (escapedPath, rawQuery string, ok bool) {
	i := strings.IndexByte(key, '/') // a key's host never holds a '/'
	if i < 0 {
		return "", "", false
	}
	escapedPath, rawQuery, _ = strings.Cut(key[i:], "?")
	return escapedPath, rawQuery, true
}
