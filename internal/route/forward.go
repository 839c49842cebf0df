package route

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// HopHeader marks a request forwarded by another node. A request carrying it
// is served where it lands and never forwarded again.
const HopHeader = "X-Crowdpilot-Hop"

// ForwarderConfig configures a Forwarder. Zero fields mean the defaults.
type ForwarderConfig struct {
	// Self is this node's ID.
	Self string
	// Hop computes the hop header's value for an outbound request (a proof
	// bound to that request, see node), so clients cannot forge one and a
	// captured value does not fit another request. Nil means Self.
	Hop func(out *http.Request) string
	// DialTimeout bounds connecting to a peer. Default 1s. A dead peer
	// refuses at once; the timeout only matters for a blackholed one, and
	// it must ride out scheduling delays on a saturated node, or a flash
	// crowd turns into false failovers and extra origin fetches.
	DialTimeout time.Duration
	// MaxConnsPerPeer bounds connections to one peer; requests beyond it
	// wait for a pooled connection (within Timeout) instead of dialling, so
	// a crowd of clients does not become a storm of peer connections.
	// Default 128.
	MaxConnsPerPeer int
	// Timeout bounds the wait for a peer's response headers. It must exceed
	// the origin timeout, or a slow origin would look like a dead peer and
	// the request would be fetched twice. Default 3s.
	Timeout time.Duration
	// TLS, if not nil, makes peers be dialled over https with this client
	// configuration (node-to-node TLS: the peers' CA, and this node's
	// certificate for peers that require one). Nil means plain http.
	TLS *tls.Config
	// Transport overrides the HTTP transport (tests). Nil means a transport
	// built from the timeouts above and TLS.
	Transport http.RoundTripper
}

// Forwarder sends a request to a peer and copies the answer back.
type Forwarder struct {
	cfg    ForwarderConfig
	scheme string // "http", or "https" with TLS
	rt     http.RoundTripper
	bufs   sync.Pool // *[]byte copy buffers
	close  func()
}

// NewForwarder returns a Forwarder with a keep-alive pool to the peers.
func NewForwarder(cfg ForwarderConfig) *Forwarder {
	if cfg.Hop == nil {
		self := cfg.Self
		cfg.Hop = func(*http.Request) string { return self }
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.MaxConnsPerPeer <= 0 {
		cfg.MaxConnsPerPeer = 128
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	f := &Forwarder{cfg: cfg, scheme: "http", rt: cfg.Transport, close: func() {}}
	if cfg.TLS != nil {
		f.scheme = "https"
	}
	if f.rt == nil {
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second}).DialContext,
			TLSClientConfig:     cfg.TLS,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: cfg.MaxConnsPerPeer,
			MaxConnsPerHost:     cfg.MaxConnsPerPeer,
			IdleConnTimeout:     60 * time.Second,
			DisableCompression:  true,
		}
		f.rt = tr
		f.close = tr.CloseIdleConnections
	}
	f.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	return f
}

// Close drops idle connections.
func (f *Forwarder) Close() { f.close() }

// ErrPeer wraps failures that happened before anything was written to the
// client, so the caller may fail over to another member.
var ErrPeer = errors.New("peer unavailable")

// ErrPeerTimeout wraps (with ErrPeer) a peer that sent no response headers
// within Timeout: it may be alive and slow, unlike one that refused or cut
// the connection.
var ErrPeerTimeout = errors.New("no response headers in time")

// IsSlowFailure reports whether err is a peer's slowness (a dial or
// header timeout) rather than a connection refused, reset or closed: the
// peer may still be working on the request.
func IsSlowFailure(err error) bool {
	if errors.Is(err, ErrPeerTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Forward sends r to the peer at addr and streams its response to w, adding
// cacheStatus (this node's own Cache-Status member) after the peer's. An
// error wrapping ErrPeer means nothing was written and the caller may try
// elsewhere. A failure mid-body aborts the response (http.ErrAbortHandler),
// as httputil.ReverseProxy does.
func (f *Forwarder) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, addr, cacheStatus string) error {
	resp, err := f.roundTrip(ctx, r, addr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		if isHopByHop(k) || IsInternalHeader(k) {
			continue
		}
		h[k] = vv
	}
	if cacheStatus != "" {
		h["Cache-Status"] = appendStatus(resp.Header["Cache-Status"], cacheStatus)
	}
	w.WriteHeader(resp.StatusCode)
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	if _, err := io.CopyBuffer(w, resp.Body, *bp); err != nil {
		if r.Context().Err() != nil {
			return nil // the client went away; nothing to report
		}
		panic(http.ErrAbortHandler)
	}
	return nil
}

// Fetch sends r to the peer at addr and returns the response for the caller
// to read (replica fills). Errors wrap ErrPeer.
func (f *Forwarder) Fetch(ctx context.Context, r *http.Request, addr string) (*http.Response, error) {
	return f.roundTrip(ctx, r, addr)
}

// roundTrip sends r to addr and waits, at most Timeout, for a pooled
// connection and the response headers. The body is then read without that
// bound (the caller's context still applies).
func (f *Forwarder) roundTrip(ctx context.Context, r *http.Request, addr string) (*http.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	out := f.outbound(ctx, r, addr)
	timer := time.AfterFunc(f.cfg.Timeout, cancel)
	resp, err := f.rt.RoundTrip(out)
	if !timer.Stop() {
		// The deadline passed: whatever arrived is abandoned, and nothing
		// has been written yet, so the caller may still fail over.
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("forward to %s: %w: %w (%v)", addr, ErrPeer, ErrPeerTimeout, f.cfg.Timeout)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("forward to %s: %w: %w", addr, ErrPeer, err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases the request's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (f *Forwarder) outbound(ctx context.Context, r *http.Request, addr string) *http.Request {
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme = f.scheme
	out.URL.Host = addr
	out.Host = r.Host
	out.Close = false
	for k := range out.Header {
		if isHopByHop(k) {
			delete(out.Header, k)
		}
	}
	out.Header.Set(HopHeader, f.cfg.Hop(out))
	if r.Body == nil || r.Body == http.NoBody {
		out.Body = nil
	}
	return out
}

func appendStatus(prev []string, own string) []string {
	out := make([]string, 0, len(prev)+1)
	out = append(out, prev...)
	return append(out, own)
}

// InternalPrefix starts the name of every header the nodes send each other
// (the hop proof, the purge revision of a peer fill). None of them may
// reach the origin or a client.
const InternalPrefix = "X-Crowdpilot-"

// IsInternalHeader reports whether the canonical header name k is one of
// the cluster's own.
func IsInternalHeader(k string) bool {
	return len(k) >= len(InternalPrefix) && strings.EqualFold(k[:len(InternalPrefix)], InternalPrefix)
}

// StripInternal deletes the cluster's own headers from h.
func StripInternal(h http.Header) {
	for k := range h {
		if IsInternalHeader(k) {
			delete(h, k)
		}
	}
}

// isHopByHop reports the RFC 9110 §7.6.1 connection-specific fields.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}
