package main

import "testing"

func TestProcsFor(t *testing.T) {
	for _, tc := range []struct {
		limit         float64
		current, want int
	}{
		{0.25, 2, 1},
		{1, 2, 1},
		{1, 1, 1},
		{1.5, 2, 2},
		{4, 4, 4},
		{0, 2, 2}, // unknown: what the runtime chose
	} {
		if got := procsFor(tc.limit, tc.current); got != tc.want {
			t.Errorf("procsFor(%v, %d) = %d, want %d", tc.limit, tc.current, got, tc.want)
		}
	}
}
