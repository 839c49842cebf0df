package httpcache

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestStoreMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, clk := newTestStore(t, StoreConfig{MaxBytes: 1 << 20, Registerer: reg})
	s.Put(spec{base: "h/a", body: 100}.entry(clk.Now()))
	s.Put(spec{base: "h/big", body: 1 << 20}.entry(clk.Now()))
	s.cache.CleanUp()
	if v := metricValue(t, reg, "crowdpilot_store_entries", ""); v != 1 {
		t.Errorf("entries = %v", v)
	}
	if v := metricValue(t, reg, "crowdpilot_store_bytes", ""); v < 100 {
		t.Errorf("bytes = %v", v)
	}
	if v := metricValue(t, reg, "crowdpilot_store_rejected_total", "too_large"); v != 1 {
		t.Errorf("rejected{too_large} = %v", v)
	}
	if _, err := NewStore(StoreConfig{Registerer: reg}); err == nil {
		t.Error("second store registered the same metrics")
	}
	s.Close()
	s2, err := NewStore(StoreConfig{Registerer: reg})
	if err != nil {
		t.Fatalf("after Close, metrics still registered: %v", err)
	}
	s2.Close()
}

func TestStoreConfigValidation(t *testing.T) {
	for _, cfg := range []StoreConfig{
		{MaxBytes: -1},
		{MaxBytes: 1 << 20, MaxEntryBytes: 2 << 20},
		{MaxIndexRefs: -1},
	} {
		if s, err := NewStore(cfg); err == nil {
			s.Close()
			t.Errorf("NewStore(%+v) accepted", cfg)
		}
	}
}

// metricValue returns the value of the metric name with the given reason
// label ("" for none).
func metricValue(t *testing.T, g prometheus.Gatherer, name, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			r := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					r = l.GetValue()
				}
			}
			if r != reason {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}
