// Package purge is the invalidation log: ordered purges in etcd, applied in
// order on every node.
//
// A purge is appended to /crowdpilot/<cluster>/purge/ and acknowledged once
// etcd has committed it; the etcd revision of that write is the purge's Rev and
// the only order that counts. Every node runs a Follower, which replays the log
// from the last revision it applied and then follows it, applying each purge
// exactly once and strictly in revision order. A follower whose position was
// compacted away flushes its whole cache instead of skipping anything.
package purge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Kind is what a purge selects.
type Kind string

// The purge kinds. These are also the values of the kind label on
// crowdpilot_purge_applied_total.
const (
	KindKey    Kind = "key"    // one cache key (URL)
	KindTag    Kind = "tag"    // every object carrying a tag
	KindPrefix Kind = "prefix" // every key starting with a path prefix
	KindAll    Kind = "all"    // everything
)

// kinds is the fixed set of kinds, in a stable order.
var kinds = [...]Kind{KindKey, KindTag, KindPrefix, KindAll}

// Limits on a request.
const (
	// MaxValueBytes bounds Key, Tag and Prefix.
	MaxValueBytes = 2 << 10
	// MaxWait bounds Request.Wait.
	MaxWait = 30 * time.Second
)

// Request asks for one purge. Exactly one of Key, Tag, Prefix and All is set.
// Its JSON form is the body of POST /api/v1/purge, for example
// {"tag": "match-1234", "soft": false, "wait": "2s"}.
type Request struct {
	Key    string `json:"key,omitempty"`
	Tag    string `json:"tag,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	All    bool   `json:"all,omitempty"`
	// Soft marks matching objects stale instead of dropping them, so
	// stale-while-revalidate can serve them once more while one refresh goes
	// to the origin.
	Soft bool `json:"soft,omitempty"`
	// Wait, when positive, makes the API return only once every live node
	// has applied the purge, or when Wait has passed (then it reports which
	// nodes have not). Zero returns as soon as the purge is committed.
	Wait Duration `json:"wait,omitempty"`
}

// Validate reports the first thing wrong with r, in words fit for an API
// client.
func (r Request) Validate() error {
	var given []string
	if r.Key != "" {
		given = append(given, `"key"`)
	}
	if r.Tag != "" {
		given = append(given, `"tag"`)
	}
	if r.Prefix != "" {
		given = append(given, `"prefix"`)
	}
	if r.All {
		given = append(given, `"all"`)
	}
	switch len(given) {
	case 0:
		return errors.New(`exactly one of "key", "tag", "prefix" or "all" is required (empty strings count as missing)`)
	case 1:
	default:
		return fmt.Errorf(`exactly one of "key", "tag", "prefix" or "all" is allowed, got %s`, strings.Join(given, " and "))
	}
	for _, f := range []struct{ name, v string }{{"key", r.Key}, {"tag", r.Tag}, {"prefix", r.Prefix}} {
		if f.v == "" {
			continue
		}
		if len(f.v) > MaxValueBytes {
			return fmt.Errorf("%s is %d bytes long, more than the %d allowed", f.name, len(f.v), MaxValueBytes)
		}
		if i := strings.IndexFunc(f.v, unicode.IsControl); i >= 0 {
			return fmt.Errorf("%s contains a control character at byte %d", f.name, i)
		}
	}
	// Tags are split on spaces (Surrogate-Key) and commas (Cache-Tag), so a
	// tag containing either could never match anything.
	if i := strings.IndexFunc(r.Tag, func(c rune) bool { return c == ',' || unicode.IsSpace(c) }); i >= 0 {
		return fmt.Errorf("tag %q contains a space or comma; purge one tag per request", r.Tag)
	}
	if r.Wait < 0 {
		return fmt.Errorf("wait %s is negative", time.Duration(r.Wait))
	}
	if time.Duration(r.Wait) > MaxWait {
		return fmt.Errorf("wait %s is longer than the %s maximum", time.Duration(r.Wait), MaxWait)
	}
	return nil
}

// target returns the kind and value a valid request selects.
func (r Request) target() (Kind, string) {
	switch {
	case r.Key != "":
		return KindKey, r.Key
	case r.Tag != "":
		return KindTag, r.Tag
	case r.Prefix != "":
		return KindPrefix, r.Prefix
	default:
		return KindAll, ""
	}
}

// Duration is a time.Duration written in JSON as a Go duration string such
// as "2s" or "1m30s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler. It accepts only strings. Its
// errors name the field "wait", the one place the API uses a Duration.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`invalid wait %s: want a duration string such as "2s"`, b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`invalid wait %q: want a duration such as "2s" or "500ms"`, s)
	}
	*d = Duration(v)
	return nil
}
