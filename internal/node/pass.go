package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"os"

	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// newPassProxy streams requests the cache does not keep (unsafe methods,
// objects above the size limit) straight to the origin.
func (n *Node) newPassProxy() http.Handler {
	return &httputil.ReverseProxy{
		Transport: n.fill.Limited(n.newPassTransport()), // large GETs under the origin limit
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(n.origin)
			pr.Out.Host = n.origin.Host
			if n.cfg.KeyHost {
				pr.Out.Host = pr.In.Host // the site, normalised (keyRequest)
			}
			// The client's address (admitClient); no X-Forwarded-Host or
			// -Proto: the origin sees one site under its own Host, or
			// with KeyHost each site under its own.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.Out.Header.Set("Surrogate-Capability", httpcache.SurrogateCapability) // never a client's
			route.StripInternal(pr.Out.Header)
		},
		ModifyResponse: func(resp *http.Response) error {
			// Purge tags are for caches, not clients.
			resp.Header.Del("Surrogate-Key")
			resp.Header.Del("Cache-Tag")
			route.StripInternal(resp.Header)
			resp.Header.Set("Cache-Status", "crowdpilot; fwd=request; detail=pass")
			resp.Header.Set("X-Served-By", n.cfg.ID)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			if cb, ok := r.Context().Value(clientBodyKey{}).(*clientBody); ok && cb.err != nil {
				// The client's fault, not the origin's.
				if errors.Is(cb.err, os.ErrDeadlineExceeded) {
					http.Error(w, "request body not received in time", http.StatusRequestTimeout)
				} else {
					w.Header().Set("Connection", "close")
					http.Error(w, "malformed request body", http.StatusBadRequest)
				}
				return
			}
			if errors.Is(err, fill.ErrShed) {
				n.unavailable(w, "origin busy", "shed")
				return
			}
			n.cfg.Logger.Debug("pass-through failed", "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "origin unavailable", http.StatusServiceUnavailable)
		},
		ErrorLog: newStdLogger(n.cfg.Logger),
	}
}

// passThrough streams a GET or HEAD to the origin uncached: an object too
// large to store, asked for with a Range or a conditional.
func (n *Node) passThrough(w http.ResponseWriter, r *http.Request) {
	n.pass.ServeHTTP(w, r) // its body was dropped in serve
}

// serveUnsafe passes a POST, PUT, PATCH or DELETE to the origin and, when
// the origin accepted it, invalidates the target URL (RFC 9111 §4.4).
func (n *Node) serveUnsafe(w http.ResponseWriter, r *http.Request) string {
	route.StripInternal(r.Header) // never forwarded: no hop to honour
	if msg := n.admitClient(r); msg != "" {
		return n.fail(w, http.StatusMisdirectedRequest, resBad, msg)
	}
	base, err := n.baseKey(r)
	if err != nil {
		return n.fail(w, http.StatusBadRequest, resBad, err.Error())
	}
	n.keyRequest(r, base) // the origin writes to what is invalidated
	if r.ContentLength > n.cfg.MaxBodyBytes {
		return n.fail(w, http.StatusRequestEntityTooLarge, resBad, "request body too large")
	}
	cb := &clientBody{ReadCloser: http.MaxBytesReader(w, r.Body, n.cfg.MaxBodyBytes)}
	r.Body = cb
	r = r.WithContext(context.WithValue(r.Context(), clientBodyKey{}, cb))
	sw := &statusWriter{ResponseWriter: w}
	n.pass.ServeHTTP(sw, r)
	n.invalidateResponse(r, base, sw.code, sw.Header())
	return resPass
}

// dropBody reads and discards a GET's or HEAD's body, which is never
// forwarded (what is keyed is what is sent), within --max-body-bytes and
// the read timeout. A body that is malformed, too slow or too large is the
// client's error, answered here (ok false) before anything is forwarded:
// a router must not blame a peer, nor the origin be asked, for it.
func (n *Node) dropBody(w http.ResponseWriter, r *http.Request) (res string, ok bool) {
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, n.cfg.MaxBodyBytes))
	r.Body.Close()
	r.Body, r.ContentLength, r.TransferEncoding = http.NoBody, 0, nil
	r.Header.Del("Content-Length")
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return "", true
	case errors.As(err, &mbe):
		return n.fail(w, http.StatusRequestEntityTooLarge, resBad, "request body too large"), false
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n.fail(w, http.StatusRequestTimeout, resBad, "request body not received in time"), false
	default:
		w.Header().Set("Connection", "close") // where the next request starts is anyone's guess
		return n.fail(w, http.StatusBadRequest, resBad, "malformed request body"), false
	}
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// clientBodyKey finds a pass-through's clientBody from the proxy's error
// handler, which sees the outbound request.
type clientBodyKey struct{}

// clientBody remembers the first error reading a client's request body, so
// a body that is malformed (bad chunking), too slow or too large is
// answered as the client's error, not as an origin failure.
type clientBody struct {
	io.ReadCloser
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}
