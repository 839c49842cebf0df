// Package tenant says which tenant a request belongs to and what each tenant
// may use: a declared config (a YAML file, later the same records in etcd)
// and a resolver that reads Host, a header, a cookie or a path prefix in the
// configured order.
package tenant

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/textproto"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultMin is a tenant's node set size when its config gives no min.
const DefaultMin = 3

// Source kinds, in a Config's Resolve list.
const (
	SourceHost   = "host"   // the request's Host, without port, lower-cased
	SourceHeader = "header" // a request header's value, e.g. header:X-Tenant
	SourceCookie = "cookie" // a cookie's value, e.g. cookie:tenant
	SourcePath   = "path"   // the longest declared path prefix
)

// Source is one place a tenant is read from.
type Source struct {
	Kind string // SourceHost, SourceHeader, SourceCookie or SourcePath
	Name string // the header or cookie name; empty for host and path
}

// String is the source as written in a config: "host", "header:X-Tenant".
func (s Source) String() string {
	if s.Name == "" {
		return s.Kind
	}
	return s.Kind + ":" + s.Name
}

// Tenant is one tenant's declaration.
type Tenant struct {
	// Name identifies the tenant in keys, metrics and etcd: letters,
	// digits, '.', '-' and '_', at most 64 bytes.
	Name string `yaml:"-" json:"name"`
	// Hosts are the Host values that resolve to it (lower-cased, no port).
	// "*.example.com" matches every subdomain of example.com, not the
	// apex.
	Hosts []string `yaml:"hosts" json:"hosts,omitempty"`
	// IDs are the values of the configured header or cookie that resolve
	// to it. A value no tenant declares resolves nothing, so a client
	// cannot invent tenants.
	IDs []string `yaml:"ids" json:"ids,omitempty"`
	// Paths are path prefixes that resolve to it. A prefix matches the
	// path itself and everything below it ("/news" matches "/news" and
	// "/news/a", not "/newsroom"); the longest declared prefix wins.
	Paths []string `yaml:"paths" json:"paths,omitempty"`
	// Min is the least size of its node set. Absent means DefaultMin;
	// it must be at least 1 (a tenant with no nodes could not be served).
	Min *int `yaml:"min" json:"min,omitempty"`
	// Max is the most nodes its set may grow to. Absent means no limit
	// but the cluster; when given it must be at least Min.
	Max *int `yaml:"max" json:"max,omitempty"`
	// Labels isolate it: only nodes carrying every one of these labels
	// may be in its set (a "whale" on dedicated hardware).
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
	// Pin names nodes that are in its set whenever they are eligible;
	// they count toward its size.
	Pin []string `yaml:"pin" json:"pin,omitempty"`
	// Exclude names nodes never in its set.
	Exclude []string `yaml:"exclude" json:"exclude,omitempty"`
}

// MinSize is the tenant's min, DefaultMin when not given.
func (t Tenant) MinSize() int {
	if t.Min == nil {
		return DefaultMin
	}
	return *t.Min
}

// MaxSize is the tenant's max and whether one is set.
func (t Tenant) MaxSize() (int, bool) {
	if t.Max == nil {
		return 0, false
	}
	return *t.Max, true
}

// Config declares the tenants and how requests are mapped to them.
type Config struct {
	// Resolve is the order in which sources are tried; the first that
	// names a declared tenant wins. Empty means every declared kind in
	// the order host, path (a header or cookie needs a name).
	Resolve []Source
	// Default is the tenant for requests no source resolves. Empty means
	// the cluster-wide default tenant (every node, as without tenants).
	Default string
	// Tenants by name.
	Tenants map[string]Tenant
}

// fileConfig is the YAML shape of a Config.
type fileConfig struct {
	Resolve []string          `yaml:"resolve"`
	Default string            `yaml:"default"`
	Tenants map[string]Tenant `yaml:"tenants"`
}

// Load reads and validates a tenants file (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tenants file: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("tenants file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes a tenants file and validates it. Unknown fields are errors,
// so a typo does not silently change what a tenant gets:
//
//	resolve: [host, "header:X-Tenant", "cookie:tenant", path]
//	default: ""
//	tenants:
//	  news:
//	    hosts: [news.example, "*.news.example"]
//	    ids: [news]
//	    min: 3
//	    max: 12
//	  whale:
//	    paths: [/whale]
//	    labels: {hardware: dedicated}
//	    exclude: [n4]
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f fileConfig
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	cfg := &Config{Default: f.Default, Tenants: make(map[string]Tenant, len(f.Tenants))}
	for _, s := range f.Resolve {
		src, err := ParseSource(s)
		if err != nil {
			return nil, err
		}
		cfg.Resolve = append(cfg.Resolve, src)
	}
	for name, t := range f.Tenants {
		t.Name = name
		cfg.Tenants[name] = t
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseSource parses "host", "path", "header:NAME" or "cookie:NAME".
func ParseSource(s string) (Source, error) {
	kind, name, _ := strings.Cut(strings.TrimSpace(s), ":")
	kind = strings.ToLower(kind)
	switch kind {
	case SourceHost, SourcePath:
		if name != "" {
			return Source{}, fmt.Errorf("resolve %q: %s takes no name", s, kind)
		}
	case SourceHeader, SourceCookie:
		if name == "" || strings.ContainsAny(name, " \t;=,") {
			return Source{}, fmt.Errorf("resolve %q: %s needs a name, as in %s:X-Tenant", s, kind, kind)
		}
		if kind == SourceHeader {
			name = textproto.CanonicalMIMEHeaderKey(name)
		}
	default:
		return Source{}, fmt.Errorf("resolve %q: unknown source (want host, path, header:NAME or cookie:NAME)", s)
	}
	return Source{Kind: kind, Name: name}, nil
}

// Sources is the order in which sources are tried: Resolve, or host then
// path when Resolve is empty.
func (c *Config) Sources() []Source {
	if len(c.Resolve) > 0 {
		return c.Resolve
	}
	return []Source{{Kind: SourceHost}, {Kind: SourcePath}}
}

// Validate checks every tenant and the relations between them: names, sizes,
// and that no host, id or path resolves to two tenants.
func (c *Config) Validate() error {
	seen := map[Source]bool{}
	for _, s := range c.Resolve {
		if seen[s] {
			return fmt.Errorf("resolve lists %s twice", s)
		}
		seen[s] = true
	}
	if c.Default != "" {
		if _, ok := c.Tenants[c.Default]; !ok {
			return fmt.Errorf("default tenant %q is not declared", c.Default)
		}
	}
	kinds := map[string]bool{}
	for _, s := range c.Sources() {
		kinds[s.Kind] = true
	}
	hosts, ids, paths := map[string]string{}, map[string]string{}, map[string]string{}
	claim := func(what, v, name string, m map[string]string) error {
		if other, ok := m[v]; ok && other != name {
			return fmt.Errorf("%s %q resolves to both %q and %q", what, v, other, name)
		}
		m[v] = name
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(c.Tenants)) {
		t := c.Tenants[name]
		if err := ValidName(name); err != nil {
			return err
		}
		if err := t.validate(); err != nil {
			return fmt.Errorf("tenant %q: %w", name, err)
		}
		switch {
		case len(t.Hosts) > 0 && !kinds[SourceHost]:
			return fmt.Errorf("tenant %q declares hosts but resolve has no host", name)
		case len(t.IDs) > 0 && !kinds[SourceHeader] && !kinds[SourceCookie]:
			return fmt.Errorf("tenant %q declares ids but resolve has no header or cookie", name)
		case len(t.Paths) > 0 && !kinds[SourcePath]:
			return fmt.Errorf("tenant %q declares paths but resolve has no path", name)
		}
		for _, h := range t.Hosts {
			if err := claim("host", strings.ToLower(h), name, hosts); err != nil {
				return err
			}
		}
		for _, id := range t.IDs {
			if err := claim("id", id, name, ids); err != nil {
				return err
			}
		}
		for _, p := range t.Paths {
			if err := claim("path", cleanPrefix(p), name, paths); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t Tenant) validate() error {
	min := t.MinSize()
	if min < 1 {
		return fmt.Errorf("min %d: must be at least 1", min)
	}
	if max, ok := t.MaxSize(); ok && max < min {
		return fmt.Errorf("max %d is below min %d", max, min)
	}
	if max, ok := t.MaxSize(); ok && len(t.Pin) > max {
		return fmt.Errorf("%d pinned nodes exceed max %d", len(t.Pin), max)
	}
	for _, h := range t.Hosts {
		if h == "" || strings.ContainsAny(h, "/: \t") || strings.Contains(h[1:], "*") ||
			(strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.")) {
			return fmt.Errorf("host %q: want a host name without port, or *.domain", h)
		}
	}
	for _, id := range t.IDs {
		if id == "" || strings.ContainsAny(id, " \t;,\"") {
			return fmt.Errorf("id %q: want a non-empty token", id)
		}
	}
	for _, p := range t.Paths {
		if !strings.HasPrefix(p, "/") || cleanPrefix(p) == "" {
			return fmt.Errorf("path %q: want a prefix starting with / (not / itself)", p)
		}
	}
	for k := range t.Labels {
		if k == "" {
			return errors.New("labels: empty label name")
		}
	}
	for _, n := range t.Pin {
		if slices.Contains(t.Exclude, n) {
			return fmt.Errorf("node %q is both pinned and excluded", n)
		}
	}
	return nil
}

// ValidName reports whether name can name a tenant (it becomes an etcd key
// segment and a metric label).
func ValidName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("tenant name %q: want 1 to 64 characters", name)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("tenant name %q: only letters, digits, '.', '-' and '_'", name)
		}
	}
	return nil
}

// cleanPrefix drops trailing slashes: "/news/" and "/news" are one prefix.
func cleanPrefix(p string) string { return strings.TrimRight(p, "/") }
