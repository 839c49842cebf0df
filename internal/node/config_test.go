package node

import (
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

func validConfig() Config {
	c := DefaultConfig()
	c.ID, c.Etcd, c.Origin, c.AdminToken = "n0", []string{"http://127.0.0.1:2379"}, "http://127.0.0.1:9000", "t"
	return c
}

// TestConfigZeroIsAValue: zero in a setting where zero is meaningful
// survives withDefaults and reaches the cache as zero; zero where it is not
// meaningful and not defaulted is an error, never a silent default.
func TestConfigZeroIsAValue(t *testing.T) {
	c := validConfig()
	c.DefaultTTL, c.StaleWhileRevalidate, c.StaleIfError = 0, 0, 0
	c.MaxBodyBytes, c.ShutdownGrace, c.IgnoreClientRevalidate = 0, 0, false
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DefaultTTL != 0 || c.StaleWhileRevalidate != 0 || c.StaleIfError != 0 || c.MaxBodyBytes != 0 || c.ShutdownGrace != 0 || c.IgnoreClientRevalidate {
		t.Errorf("zeros replaced by defaults: %+v", c)
	}
	if d := c.cacheDefaults(); d.TTL != 0 || d.StaleWhileRevalidate != 0 || d.StaleIfError != 0 {
		t.Errorf("cache defaults %+v, want no TTL and no grace", d)
	}
	if p := c.requestPolicy(); p.IgnoreClientRevalidate {
		t.Error("client directives ignored though IgnoreClientRevalidate is false")
	}

	for _, tt := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"prefresh 0", func(c *Config) { c.Prefresh = 0 }, "prefresh"},
		{"purge max disconnect 0", func(c *Config) { c.PurgeMaxDisconnect = 0 }, "purge max disconnect"},
		{"negative grace", func(c *Config) { c.StaleIfError = -time.Second }, "stale-if-error"},
		{"origin limit floor above its ceiling", func(c *Config) { c.OriginMinConcurrency, c.OriginMaxConcurrency = 65, 64 }, "origin min concurrency"},
	} {
		c := validConfig()
		tt.set(&c)
		if err := c.withDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
}

// TestConfigStrict: Strict removes every deviation whatever the other
// settings say.
func TestConfigStrict(t *testing.T) {
	c := validConfig()
	c.DefaultTTL = time.Minute
	c.Strict = true
	if d := c.cacheDefaults(); d != (httpcache.Defaults{}) {
		t.Errorf("strict cache defaults %+v, want none (nor stale under s-maxage)", d)
	}
	if c.requestPolicy().IgnoreClientRevalidate {
		t.Error("strict ignores client directives")
	}
	d := DefaultConfig()
	if d.DefaultTTL != 0 || d.cacheDefaults().StaleWhileRevalidate != 10*time.Second || !d.requestPolicy().IgnoreClientRevalidate {
		t.Errorf("defaults: %+v %+v", d.cacheDefaults(), d.requestPolicy())
	}
}
