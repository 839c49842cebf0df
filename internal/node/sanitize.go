package node

// What a node sends upstream is what it keyed (issue 10): the target
// rewritten to its cache key's path and query.

import (
	"net/http"
	"net/url"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// keyedTarget rewrites r's target to the path and query of base, its cache
// key, so a peer and the origin receive exactly what is keyed: "/a/../b"
// and "/a/%2e%2e/b" go out as "/b" (an origin that does not normalise
// cannot answer "/a/" for the key "/b"), "/a%2Fb" stays "/a%2Fb" and
// apart from "/a/b", and parameters go in key order.
func keyedTarget(r *http.Request, base string) {
	p, q, ok := httpcache.KeyTarget(base)
	if !ok {
		return
	}
	path, err := url.PathUnescape(p)
	if err != nil {
		return // a key's escapes are valid; leave a request we cannot read alone
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.ForceQuery = path, p, q, false
	if path == p {
		r.URL.RawPath = ""
	}
}
