package fill

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
)

// reusedRetry sends a request without a body once more when it failed on a
// reused keep-alive connection before any response came back. Such a
// failure says nothing about the request: the connection may carry bytes the
// origin wrote past the previous response's Content-Length (read as this
// response's status line: "malformed HTTP response"), or the origin closed
// it while idle. net/http retries only the second case, and only when
// nothing was read; without the retry an origin's one bad response fails
// whichever fetch next takes its connection, a different one each run.
// Timeouts are not retried (the fetch's deadline is spent), nor requests
// whose context ended. The retry takes another idle connection or dials.
type reusedRetry struct {
	rt      http.RoundTripper
	retried func() // counts a retry
}

func (t reusedRetry) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		return t.rt.RoundTrip(r)
	}
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) { reused.Store(c.Reused) }}
	traced := r.WithContext(httptrace.WithClientTrace(r.Context(), trace))
	resp, err := t.rt.RoundTrip(traced)
	if err == nil || !reused.Load() || r.Context().Err() != nil {
		return resp, err
	}
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return resp, err
	}
	t.retried()
	return t.rt.RoundTrip(r)
}
