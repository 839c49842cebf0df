package node

import (
	"net/http"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// refreshRequest is the request a background refresh triggered by r is made
// with: r itself, or, when r said no-store, a copy without its cache
// directives. The refresh stores for everyone; one client's no-store covers
// only the response to that client (RFC 9111 §5.2.1.5).
func refreshRequest(r *http.Request, req httpcache.Directives) *http.Request {
	if !req.NoStore {
		return r
	}
	c := r.Clone(r.Context())
	delete(c.Header, "Cache-Control")
	delete(c.Header, "Pragma")
	return c
}

// onlyIfCached answers a request with only-if-cached that nothing stored
// may answer: 504 (RFC 9111 §5.2.1.7).
func (n *Node) onlyIfCached(w http.ResponseWriter) string {
	w.Header().Set("Cache-Status", "crowdpilot; fwd=miss; detail=only-if-cached")
	w.Header()["X-Served-By"] = n.servedBy
	http.Error(w, "not cached (only-if-cached)", http.StatusGatewayTimeout)
	return resMiss
}
