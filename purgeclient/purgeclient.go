// Package purgeclient purges cached objects from a crowdpilot cluster through
// its admin API. An origin imports it to purge right after it commits a
// change. It depends on the standard library only.
//
//	c := &purgeclient.Client{BaseURL: "http://127.0.0.1:9080", Token: token}
//	res, err := c.PurgeTag(ctx, "match-1234", purgeclient.Wait(2*time.Second))
//	// err == nil: committed; it will reach every node. res.Complete: every
//	// live node applied it within the wait; else res.Pending names the rest.
package purgeclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Path is where the admin API takes purges.
const Path = "/api/v1/purge"

// maxResponseBytes bounds how much of an answer is read.
const maxResponseBytes = 1 << 20

// ErrInvalidRequest is wrapped by errors for requests refused before
// sending (no target, two targets, negative wait).
var ErrInvalidRequest = errors.New("invalid purge request")

// Client calls one node's admin API; any node accepts purges for the whole
// cluster. Its zero value is not usable: BaseURL is required. A Client is
// safe for concurrent use.
type Client struct {
	// BaseURL is the admin listener, e.g. "http://127.0.0.1:9080".
	BaseURL string
	// Token is the admin bearer token. Empty sends no Authorization header.
	Token string
	// HTTPClient sends the requests. If nil, http.DefaultClient is used.
	HTTPClient *http.Client
}

// Request is one purge. Exactly one of Key, Tag, Prefix and All is set.
type Request struct {
	Key    string // one cache key (URL)
	Tag    string // every object tagged with it (Surrogate-Key, Cache-Tag)
	Prefix string // every object under a path prefix
	All    bool   // everything
	// Soft marks objects stale instead of dropping them: they may be served
	// once more while one refresh goes to the origin.
	Soft bool
	// Wait, when positive, makes the call return only once every live node
	// has applied the purge, or after Wait (the server allows at most 30s).
	Wait time.Duration
}

// Result is the server's answer to a committed purge.
type Result struct {
	Rev   int64  `json:"rev"` // etcd revision that committed the purge
	Kind  string `json:"kind"`
	Value string `json:"value"`
	Soft  bool   `json:"soft"`
	// Complete is true when every live node had applied the purge when the
	// server answered. Without Wait it is a single look right after the
	// commit, and usually false.
	Complete bool     `json:"complete"`
	Applied  []string `json:"applied"` // nodes that have applied it
	Pending  []string `json:"pending"` // live nodes that have not
}

// Error is a refusal by the server: nothing was purged (for 4xx) or the
// purge could not be committed (5xx).
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("purge refused: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Option adjusts a Request built by PurgeKey, PurgeTag, PurgePrefix and
// PurgeAll.
type Option func(*Request)

// Soft makes the purge soft: mark stale instead of drop.
func Soft() Option { return func(r *Request) { r.Soft = true } }

// Wait makes the call wait up to d for every live node to apply the purge.
func Wait(d time.Duration) Option { return func(r *Request) { r.Wait = d } }

// PurgeKey purges one cache key.
func (c *Client) PurgeKey(ctx context.Context, key string, opts ...Option) (Result, error) {
	return c.Purge(ctx, build(Request{Key: key}, opts))
}

// PurgeTag purges every object carrying tag.
func (c *Client) PurgeTag(ctx context.Context, tag string, opts ...Option) (Result, error) {
	return c.Purge(ctx, build(Request{Tag: tag}, opts))
}

// PurgePrefix purges every object whose path starts with prefix.
func (c *Client) PurgePrefix(ctx context.Context, prefix string, opts ...Option) (Result, error) {
	return c.Purge(ctx, build(Request{Prefix: prefix}, opts))
}

// PurgeAll purges everything.
func (c *Client) PurgeAll(ctx context.Context, opts ...Option) (Result, error) {
	return c.Purge(ctx, build(Request{All: true}, opts))
}

func build(r Request, opts []Option) Request {
	for _, o := range opts {
		o(&r)
	}
	return r
}

// Purge sends r. It returns a Result once the purge is committed (whether or
// not every node applied it within Wait), an *Error when the server refuses
// it, an error wrapping ErrInvalidRequest when r is refused before sending,
// and other errors when the server could not be reached, in which case the
// purge may or may not have been committed; purges are idempotent, so retry.
func (c *Client) Purge(ctx context.Context, r Request) (Result, error) {
	body, err := r.encode()
	if err != nil {
		return Result{}, err
	}
	if c.BaseURL == "" {
		return Result{}, errors.New("purge: Client.BaseURL is empty")
	}
	u, err := url.JoinPath(c.BaseURL, Path)
	if err != nil {
		return Result{}, fmt.Errorf("purge: admin URL %q: %w", c.BaseURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("purge: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("purge via %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return Result{}, fmt.Errorf("purge via %s: read answer: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return Result{}, &Error{StatusCode: resp.StatusCode, Message: errorMessage(b)}
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return Result{}, fmt.Errorf("purge via %s: answer %d is not a purge result: %w", u, resp.StatusCode, err)
	}
	return res, nil
}

// encode checks r and returns its JSON body.
func (r Request) encode() ([]byte, error) {
	n := 0
	for _, set := range []bool{r.Key != "", r.Tag != "", r.Prefix != "", r.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: exactly one of key, tag, prefix or all must be set, got %d", ErrInvalidRequest, n)
	}
	if r.Wait < 0 {
		return nil, fmt.Errorf("%w: negative wait %s", ErrInvalidRequest, r.Wait)
	}
	body := struct {
		Key    string `json:"key,omitempty"`
		Tag    string `json:"tag,omitempty"`
		Prefix string `json:"prefix,omitempty"`
		All    bool   `json:"all,omitempty"`
		Soft   bool   `json:"soft,omitempty"`
		Wait   string `json:"wait,omitempty"`
	}{Key: r.Key, Tag: r.Tag, Prefix: r.Prefix, All: r.All, Soft: r.Soft}
	if r.Wait > 0 {
		body.Wait = r.Wait.String()
	}
	return json.Marshal(body)
}

// errorMessage extracts {"error": "..."} from an answer, or falls back to
// its text.
func errorMessage(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = "(no message)"
	}
	return s
}
