package node

// Several sites behind one cluster (Config.KeyHost): the request's Host is
// part of the key, and every request to the origin carries it.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// keyHost is the host part of a base key ("host/path?query").
func keyHost(base string) string {
	host, _, _ := strings.Cut(base, "/")
	return host
}

// keyRequest makes r ask for exactly what base keys (keyedTarget) and,
// with KeyHost, for base's host: lower-case, without a default port, so a
// forward, a fill and the origin all see the site the key names.
func (n *Node) keyRequest(r *http.Request, base string) {
	keyedTarget(r, base)
	if n.cfg.KeyHost {
		r.Host = keyHost(base)
	}
}

// siteKeys turns a purge's key or prefix into what it names in the store.
// Without KeyHost: v (a path, or a full URL whose host is ignored) under
// the origin's host, as always. With KeyHost: v names its site as a URL
// ("http://news.example/a") or as a key ("news.example/a"); a bare path
// ("/a") names that path on every allowed host. key false: v is a prefix,
// matched as written (only the host is normalised).
func (n *Node) siteKeys(v string, key bool) ([]string, error) {
	if !n.cfg.KeyHost {
		if !key {
			return []string{n.origin.Host + v}, nil
		}
		k, err := n.keyOfURL(v)
		return []string{k}, err
	}
	if strings.HasPrefix(v, "/") {
		out := make([]string, 0, len(n.cfg.AllowedHosts))
		for _, h := range n.cfg.AllowedHosts {
			if !key {
				out = append(out, canonicalHost(h)+v)
				continue
			}
			k, err := n.keyOfURLOn(canonicalHost(h), v)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		return out, nil
	}
	if !key {
		host, rest, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(v, "http://"), "https://"), "/")
		return []string{canonicalHost(host) + "/" + rest}, nil
	}
	if !strings.Contains(v, "://") {
		v = "http://" + v
	}
	u, err := url.Parse(v)
	if err != nil {
		return nil, err
	}
	if u.Host == "" {
		return nil, errors.New("no site: want a URL, a key such as news.example/a, or a path for every site")
	}
	k, err := n.keyOfURLOn(u.Host, u.RequestURI())
	return []string{k}, err
}

// siteOfKey is the host a base key is fetched under: its own with KeyHost
// (one of the allowed hosts), else the origin's.
func (n *Node) siteOfKey(key string) (string, error) {
	if !n.cfg.KeyHost {
		return n.origin.Host, nil
	}
	host := keyHost(key)
	if !n.hostAllowed(host) {
		return "", fmt.Errorf("key %q is not a key of a site in --allowed-hosts", key)
	}
	return host, nil
}

// siteObjectKey is objectKey with KeyHost: s must name its site, as a URL
// ("http://news.example/live/1") or a key ("news.example/live/1").
func (n *Node) siteObjectKey(s string) (string, error) {
	bad := func(why string) error {
		return badObject{fmt.Sprintf("key %q: %s: with --key-host name the site, as a URL such as http://news.example/live/1 or a key such as news.example/live/1", s, why)}
	}
	switch {
	case len(s) > cluster.MaxObjectKeyBytes:
		return "", badObject{fmt.Sprintf("key of %d bytes: at most %d", len(s), cluster.MaxObjectKeyBytes)}
	case strings.HasPrefix(s, "/"):
		return "", bad("a path names no site")
	case strings.Contains(s, "#"):
		return "", bad("a fragment is never part of a key")
	case strings.Contains(s, "://") && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://"):
		return "", bad("not an http(s) URL")
	}
	keys, err := n.siteKeys(s, true)
	if err != nil {
		return "", bad(err.Error())
	}
	if !n.hostAllowed(keyHost(keys[0])) {
		return "", bad("its host is not in --allowed-hosts")
	}
	return keys[0], nil
}
