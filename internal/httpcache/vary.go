package httpcache

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// VariantKey folds the request's values of the Vary header names into base:
// base + "#Name=value" for each name, in canonical form and sorted. Values are
// normalised: each field line is trimmed, runs of whitespace collapse to one
// space, whitespace around commas is dropped, and several lines are joined
// with ", "; Accept-Encoding's codings are also lower-cased and sorted, and
// Accept-Language lower-cased (language ranges are case-insensitive, RFC
// 4647 §2; their order still counts: it is the user's preference). An
// absent header is written
// as "#Name" so that it differs from an empty one. '#', '%', '=' and control
// bytes in names and values are percent-encoded, and base keys never contain
// a raw '#', so variant keys are unambiguous. With no names, VariantKey
// returns base. vary may be Entry.Vary, or the raw Vary field lines of a
// response (h["Vary"]): names are split at commas, canonicalised, sorted and
// deduplicated when they are not already.
func VariantKey(base string, vary []string, reqHeader http.Header) string {
	if len(vary) == 0 {
		return base
	}
	names := vary
	if !canonicalSorted(vary) {
		names = make([]string, 0, len(vary))
		for _, line := range vary {
			for f := range strings.SplitSeq(line, ",") {
				if f = strings.TrimSpace(f); f != "" {
					names = append(names, textproto.CanonicalMIMEHeaderKey(f))
				}
			}
		}
		slices.Sort(names)
		names = slices.Compact(names)
	}
	n := len(base)
	for _, name := range names {
		n += len(name) + 2
		for _, v := range reqHeader[name] {
			n += len(v) + 2
		}
	}
	var b strings.Builder // one allocation: String does not copy
	b.Grow(n + 8)
	b.WriteString(base)
	for _, name := range names {
		b.WriteByte('#')
		writeVaryText(&b, name)
		vs, ok := reqHeader[name]
		if !ok {
			continue
		}
		b.WriteByte('=')
		if name == "Accept-Encoding" {
			writeCodings(&b, vs)
			continue
		}
		lang := name == "Accept-Language"
		for i, v := range vs {
			if i > 0 {
				b.WriteString(", ")
			}
			writeFolded(&b, v, lang)
		}
	}
	return b.String()
}

// writeCodings writes the members of Accept-Encoding lines lower-cased and
// sorted: content codings are case-insensitive and their order carries no
// preference (RFC 9110 §8.4.1, §12.5.3: weights do), so "gzip, br" and
// "BR,gzip" ask for the same variant.
func writeCodings(b *strings.Builder, vs []string) {
	var buf [8]string
	members := buf[:0]
	for _, v := range vs {
		for m := range strings.SplitSeq(v, ",") {
			if m = strings.Trim(m, " \t"); m != "" {
				members = append(members, strings.ToLower(m))
			}
		}
	}
	slices.Sort(members)
	for i, m := range members {
		if i > 0 {
			b.WriteString(", ")
		}
		writeFolded(b, m, false)
	}
}

// canonicalSorted reports whether names are canonical, sorted and distinct,
// as Entry.Vary is, so that VariantKey can use them as they are.
func canonicalSorted(names []string) bool {
	for i, n := range names {
		if n == "" || textproto.CanonicalMIMEHeaderKey(n) != n || i > 0 && names[i-1] >= n {
			return false
		}
	}
	return true
}

// writeFolded writes v trimmed, with whitespace runs collapsed to one space
// and whitespace around commas written as ", ": "a,b", "a , b" and two
// field lines "a" and "b" are the same list (RFC 9111 §4.1). lower writes
// ASCII letters in lower case.
func writeFolded(b *strings.Builder, v string, lower bool) {
	v = strings.Trim(v, " \t")
	for i := 0; i < len(v); {
		j := i
		for j < len(v) && !varySpecial(v[j]) {
			j++
		}
		if lower {
			for _, c := range []byte(v[i:j]) {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b.WriteByte(c)
			}
		} else {
			b.WriteString(v[i:j])
		}
		if j == len(v) {
			return
		}
		switch c := v[j]; c {
		case ' ', '\t', ',':
			comma := false
			for j < len(v) && (v[j] == ' ' || v[j] == '\t' || v[j] == ',' && !comma) {
				comma = comma || v[j] == ','
				j++
			}
			if comma {
				b.WriteString(", ")
			} else {
				b.WriteByte(' ') // v is trimmed: a value follows
			}
			i = j
		default:
			writeEscaped(b, c)
			i = j + 1
		}
	}
}

// writeVaryText writes s with VariantKey's separators escaped.
func writeVaryText(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '#' || c == '%' || c == '=' || isCTL(c) {
			writeEscaped(b, c)
		} else {
			b.WriteByte(c)
		}
	}
}

// varySpecial reports the bytes writeFolded does not copy as they are.
func varySpecial(c byte) bool {
	return c == '#' || c == '%' || c == '=' || c == ' ' || c == '\t' || c == ',' || isCTL(c)
}

func writeEscaped(b *strings.Builder, c byte) {
	const hex = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&15])
}
