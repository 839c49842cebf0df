package node

// What a node sends upstream is what it keyed (issue 10): the target
// rewritten to its cache key's path and query.

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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
	// RawPath even when it decodes to itself: Go would escape sub-delims
	// such as '!' that the key keeps raw.
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.ForceQuery = path, p, q, false
}

// unkeyedHeaders are request headers common frameworks act on (to build
// absolute links, pick a scheme, rewrite the path, change the method) that
// are not part of the cache key. A client's copy is deleted before anything
// else reads the request, so none reaches the origin on a fill or a pass.
var unkeyedHeaders = [...]string{
	"Forwarded",
	"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Scheme",
	"X-Forwarded-Server", "X-Forwarded-Prefix", "X-Forwarded-Path", "X-Forwarded-Uri",
	"X-Forwarded-Ssl", "Front-End-Https", "X-Url-Scheme",
	"X-Host", "X-Original-Host", "X-Original-Url", "X-Rewrite-Url", "X-Original-Uri",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method",
	"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
	"X-Cluster-Client-Ip",
}

// unkeyedSet is unkeyedHeaders as a set, built once and only read.
var unkeyedSet = func() map[string]bool {
	set := make(map[string]bool, len(unkeyedHeaders))
	for _, k := range unkeyedHeaders {
		set[k] = true
	}
	return set
}()

// admitClient prepares a request that entered the cluster here (not a
// verified hop): it answers "" when r may be served, else why not (the
// caller answers 421). Headers the key does not cover are deleted and
// X-Forwarded-For is set to the real client address, replacing whatever
// the client claimed; routers forward it and the owner's fill passes it on.
func (n *Node) admitClient(r *http.Request) string {
	if !n.hostAllowed(r.Host) {
		return "host " + strconv.Quote(r.Host) + " is not served here (see --allowed-hosts)"
	}
	for k := range r.Header { // a request has a few fields, the list dozens
		if unkeyedSet[k] {
			delete(r.Header, k)
		}
	}
	n.dropIgnoredCookies(r)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		r.Header["X-Forwarded-For"] = []string{ip}
	} else {
		delete(r.Header, "X-Forwarded-For")
	}
	return ""
}

// hostSet is what hostAllowed compares against, computed once the data
// listener is bound (newHostSet), so the serving path only looks a host up.
type hostSet struct {
	exact map[string]bool // canonical host[:port] values served
	names map[string]bool // host names served on any port (declared tenants)
}

// newHostSet is the set of Hosts this node serves. With --allowed-hosts the
// list decides. Without it, the origin's host and this node's own addresses
// are served (what `up` and a load balancer dialling the node by address
// send), "localhost" on the node's port, and the hosts of the declared
// tenants. Without KeyHost every allowed host is one site, keyed under the
// origin's host, and the origin is always asked with its own Host and no
// X-Forwarded-Host: the client's Host cannot change what is stored. With
// KeyHost (which requires the list) each allowed host is a site of its own,
// keyed and fetched under its Host (sites.go).
func (n *Node) newHostSet() hostSet {
	hs := hostSet{exact: map[string]bool{}, names: map[string]bool{}}
	if len(n.cfg.AllowedHosts) > 0 {
		for _, a := range n.cfg.AllowedHosts {
			hs.exact[canonicalHost(a)] = true
		}
		return hs
	}
	hs.exact[canonicalHost(n.origin.Host)] = true
	if n.cfg.Tenants != nil {
		for _, t := range n.cfg.Tenants.Tenants {
			for _, th := range t.Hosts {
				hs.exact[canonicalHost(th)] = true
				hs.names[strings.ToLower(th)] = true
			}
		}
	}
	for _, a := range []string{n.cfg.Listen, n.cfg.AdvertiseAddr, n.DataAddr()} {
		if a == "" {
			continue
		}
		hs.exact[canonicalHost(a)] = true
		if _, port, err := net.SplitHostPort(a); err == nil {
			hs.exact["localhost:"+port] = true
		}
	}
	return hs
}

// hostAllowed reports whether this node serves requests for host (see
// newHostSet).
func (n *Node) hostAllowed(host string) bool {
	h := canonicalHost(host)
	if n.hosts.exact[h] {
		return true
	}
	if len(n.hosts.names) > 0 {
		if name, _, err := net.SplitHostPort(h); err == nil {
			h = name
		}
		return n.hosts.names[h]
	}
	return false
}

// canonicalHost lowercases host and drops a default port.
func canonicalHost(host string) string {
	h := strings.ToLower(host)
	for _, port := range []string{":80", ":443"} {
		s, ok := strings.CutSuffix(h, port)
		if ok && (!strings.Contains(s, ":") || strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")) {
			return s
		}
	}
	return h
}

// dropIgnoredCookies deletes the cookies named by --ignore-cookies (a
// trailing '*' matches a prefix: "_ga*") from r, and the Cookie header if
// none is left, so analytics cookies do not make a page personal.
func (n *Node) dropIgnoredCookies(r *http.Request) {
	if len(n.cfg.IgnoreCookies) == 0 || len(r.Header["Cookie"]) == 0 {
		return
	}
	var kept []string
	for _, line := range r.Header["Cookie"] {
		for c := range strings.SplitSeq(line, ";") {
			c = strings.TrimSpace(c)
			name, _, _ := strings.Cut(c, "=")
			if c != "" && !n.ignoredCookie(name) {
				kept = append(kept, c)
			}
		}
	}
	if len(kept) == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{strings.Join(kept, "; ")}
}

func (n *Node) ignoredCookie(name string) bool {
	for _, ig := range n.cfg.IgnoreCookies {
		if p, ok := strings.CutSuffix(ig, "*"); ok && strings.HasPrefix(name, p) || ig == name {
			return true
		}
	}
	return false
}

// cookieNotShared reports whether r carries a Cookie and the stored copy
// of base, if any, was not marked shared by the origin (public or
// s-maxage): such a request is fetched on its own, never collapsed with
// others or answered from their copy, and its response is stored only if
// the origin says it is shared (httpcache.Storable).
func (n *Node) cookieNotShared(r *http.Request, base string) bool {
	if r.Header.Get("Cookie") == "" {
		return false
	}
	e, ok := n.store.Get(base, r.Header)
	if !ok {
		return true
	}
	cc := httpcache.ParseCacheControl(e.Header)
	return !cc.Public && !cc.HasSMaxAge
}
