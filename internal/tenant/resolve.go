package tenant

import (
	"net/http"
	"strings"
)

// Resolver maps requests to tenant names. It is immutable once built, so
// the serving path reads it without locks, and Resolve does not allocate.
type Resolver struct {
	sources []Source
	def     string
	hosts   map[string]string // exact host -> tenant
	wild    map[string]string // domain of "*.domain" -> tenant
	ids     map[string]string // header or cookie value -> tenant
	paths   map[string]string // cleaned prefix -> tenant
}

// NewResolver builds a Resolver from a validated Config. A nil Config gives
// a Resolver that resolves every request to the default tenant "".
func NewResolver(c *Config) *Resolver {
	r := &Resolver{hosts: map[string]string{}, wild: map[string]string{}, ids: map[string]string{}, paths: map[string]string{}}
	if c == nil {
		return r
	}
	r.sources = c.Sources()
	r.def = c.Default
	for name, t := range c.Tenants {
		for _, h := range t.Hosts {
			h = strings.ToLower(h)
			if d, ok := strings.CutPrefix(h, "*."); ok {
				r.wild[d] = name
			} else {
				r.hosts[h] = name
			}
		}
		for _, id := range t.IDs {
			r.ids[id] = name
		}
		for _, p := range t.Paths {
			r.paths[cleanPrefix(p)] = name
		}
	}
	return r
}

// Resolve names req's tenant: the first source, in the configured order,
// whose value a tenant declares, else the Default.
func (r *Resolver) Resolve(req *http.Request) string {
	for _, s := range r.sources {
		var t string
		var ok bool
		switch s.Kind {
		case SourceHost:
			t, ok = r.byHost(req.Host)
		case SourceHeader:
			if vs := req.Header[s.Name]; len(vs) > 0 {
				t, ok = r.ids[strings.TrimSpace(vs[0])]
			}
		case SourceCookie:
			if v, found := cookie(req.Header["Cookie"], s.Name); found {
				t, ok = r.ids[v]
			}
		case SourcePath:
			t, ok = r.byPath(req.URL.Path)
		}
		if ok {
			return t
		}
	}
	return r.def
}

// byHost matches the host without its port, exactly first, then the
// closest "*.domain".
func (r *Resolver) byHost(host string) (string, bool) {
	host = strings.ToLower(stripPort(host))
	host = strings.TrimSuffix(host, ".")
	if t, ok := r.hosts[host]; ok {
		return t, true
	}
	for {
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return "", false
		}
		host = host[i+1:]
		if t, ok := r.wild[host]; ok {
			return t, true
		}
	}
}

// byPath matches the longest declared prefix that ends at a segment
// boundary of path.
func (r *Resolver) byPath(path string) (string, bool) {
	if len(r.paths) == 0 {
		return "", false
	}
	p := strings.TrimRight(path, "/")
	for p != "" {
		if t, ok := r.paths[p]; ok {
			return t, true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return "", false
}

func stripPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}

// cookie finds the first cookie named name in Cookie header lines without
// allocating (net/http's parser builds every cookie).
func cookie(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
