package fill

import (
	"net/http"
)

// Limited returns a RoundTripper that sends requests through rt under the
// same adaptive origin limit as fills: a request that finds the limit full
// fails with ErrShed (counted) unless a permit frees within LimitWait, and a permit is held until the
// response body is closed. Node uses it for GETs it streams through
// uncached (objects over MaxObjectBytes), so a crowd for a large object
// cannot open origin requests outside the limit.
func (g *Group) Limited(rt http.RoundTripper) http.RoundTripper {
	return limitedTransport{g: g, rt: rt}
}

type limitedTransport struct {
	g  *Group
	rt http.RoundTripper
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return t.rt.RoundTrip(r)
	}
	permit, ok := t.g.permit(r.Context())
	if !ok {
		t.g.cfg.Shed("origin_limit")
		t.g.m.fetches.WithLabelValues("shed").Inc()
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, ErrShed
	}
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		permit.Drop()
		return nil, err
	}
	resp.Body = &permitBody{ReadCloser: resp.Body, permit: permit}
	return resp, nil
}
