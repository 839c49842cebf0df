package httpcache

import "strings"

// appendEscaped appends c percent-encoded, with upper-case hex digits.
func appendEscaped(b []byte, c byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(b, '%', hex[c>>4], hex[c&15])
}

func isHex(c byte) bool { return charClass[c]&classHex != 0 }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func isCTL(c byte) bool { return charClass[c]&classCTL != 0 }

// isUnreserved reports RFC 3986 unreserved characters.
func isUnreserved(c byte) bool { return charClass[c]&classUnreserved != 0 }

// isRawPathByte reports the characters a path may hold unescaped (pchar and
// '/', RFC 3986 §3.3).
func isRawPathByte(c byte) bool { return charClass[c]&classRawPath != 0 }

// isGoRawPathByte reports the characters net/url leaves unescaped when it
// encodes a path, so a request whose RawPath is empty is keyed as if its
// target had been that encoding.
func isGoRawPathByte(c byte) bool { return charClass[c]&classGoRawPath != 0 }

// isRawQueryByte reports the characters a query may hold unescaped (pchar,
// '/' and '?', RFC 3986 §3.4).
func isRawQueryByte(c byte) bool { return charClass[c]&classRawQuery != 0 }

// Character classes, as bits of charClass.
const (
	classUnreserved = 1 << iota
	classRawPath
	classGoRawPath
	classRawQuery
	classCTL
	classHex
	classBadHost
)

// charClass maps each byte to its classes. It is computed once and never
// written again.
var charClass = func() (t [256]uint8) {
	for c := range 256 {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-._~", b) >= 0 {
			t[c] |= classUnreserved | classRawPath | classGoRawPath | classRawQuery
		}
		if b != 0 && strings.IndexByte("!$&'()*+,;=:@/", b) >= 0 {
			t[c] |= classRawPath | classRawQuery
		}
		if b != 0 && strings.IndexByte("$&+,/:;=@", b) >= 0 {
			t[c] |= classGoRawPath
		}
		if b == '?' {
			t[c] |= classRawQuery
		}
		if b < 0x20 || b == 0x7f {
			t[c] |= classCTL
		}
		if '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F' {
			t[c] |= classHex
		}
		if b <= ' ' || b >= 0x7f || strings.IndexByte("/?#\\@", b) >= 0 {
			t[c] |= classBadHost
		}
	}
	return t
}()
