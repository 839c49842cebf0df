package httpcache

import "testing"

func TestBoundRanges(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"bytes=0-9", "bytes=0-9", true},
		{"bytes=0-9,5-14,10-19", "bytes=0-19", true},
		{"bytes=10-19,0-9", "bytes=0-19", true},
		{"bytes=0-0,50-50", "bytes=0-50", true},          // gap under rangeGap
		{"bytes=0-0,500-500", "bytes=0-0,500-500", true}, // kept apart
		{"bytes=-10", "bytes=990-999", true},             // suffix
		{"bytes=990-", "bytes=990-999", true},            // open
		{"bytes=0-5000", "bytes=0-999", true},            // clipped
		{"bytes=5000-6000", "", false},                   // unsatisfiable: ServeContent's 416
		{"bytes=5000-6000,0-1", "bytes=0-1", true},       // the unsatisfiable one dropped
		{"bytes=9-1", "", false},                         // malformed
		{"items=0-1", "", false},                         // other unit
		{"bytes=a-b", "", false},                         //
	} {
		got, ok := boundRanges(tt.in, 1000)
		if got != tt.want || ok != tt.ok {
			t.Errorf("boundRanges(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	many := "bytes=0-0"
	for i := 1; i <= MaxRanges; i++ {
		many += "," + itoa(int64(i*200)) + "-" + itoa(int64(i*200))
	}
	if got, ok := boundRanges(many, 100000); got != "" || !ok {
		t.Errorf("%d distinct ranges = %q, %v; want the whole object", MaxRanges+1, got, ok)
	}
}
