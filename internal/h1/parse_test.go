package h1

import (
	"net/url"
	"reflect"
	"testing"
)

var requestTargets = []string{
	"/", "/a", "/obj/0", "/a/b/c.html", "/a;b=c,d@e:f$g&h+i~j_k-l.m",
	"/a?b", "/a?b=c&d=e", "/a?", "/a??", "/a?b?c", "/?x", "//double", "///triple",
	"/%41", "/a%2fb", "/%zz", "/a b", "/a\"b", "/a<b>", "/a{b}", "/a|b", "/a\\b", "/a^b", "/a`b",
	"/a!b", "/a*b", "/a(b)", "/a'b", "/a[b]", "/a#frag", "/a?b#c", "/a?%zz", "/a?b c",
}

// requestURL gives what url.ParseRequestURI gives, field for field and
// error for error, for every origin-form target.
func TestRequestURLIsParseRequestURI(t *testing.T) {
	for _, target := range requestTargets {
		checkRequestURL(t, target)
	}
}

func FuzzRequestURLIsParseRequestURI(f *testing.F) {
	for _, target := range requestTargets {
		f.Add(target)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if target == "" || target[0] != '/' {
			return // requestLine takes only origin-form targets
		}
		for i := 0; i < len(target); i++ {
			if target[i] <= ' ' || target[i] >= 0x7f {
				return // nor anything but printable ASCII
			}
		}
		checkRequestURL(t, target)
	})
}

func checkRequestURL(t *testing.T, target string) {
	t.Helper()
	got, gotErr := requestURL(target)
	want, wantErr := url.ParseRequestURI(target)
	if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
		t.Errorf("requestURL(%q) = %#v, %v; url.ParseRequestURI: %#v, %v", target, got, gotErr, want, wantErr)
	}
}
