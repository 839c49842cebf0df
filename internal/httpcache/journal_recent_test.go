package httpcache

import "testing"

func TestPurgedRecently(t *testing.T) {
	for _, tt := range []struct {
		name   string
		purges func(s *Store)
		n      int
		want   bool
	}{
		{"no purges", func(s *Store) {}, 64, false},
		{"the key", func(s *Store) { s.PurgeKey("h/a", false) }, 64, true},
		{"another key", func(s *Store) { s.PurgeKey("h/b", false) }, 64, false},
		{"a prefix", func(s *Store) { s.PurgePrefix("h/", true) }, 64, true},
		{"everything", func(s *Store) { s.PurgeAll(false) }, 64, true},
		{"a tag", func(s *Store) { s.PurgeTag("t", false) }, 64, false},
		{"the key, then more than n others", func(s *Store) {
			s.PurgeKey("h/a", false)
			for range 3 {
				s.PurgeKey("h/b", false)
			}
		}, 3, false},
		{"the key within n", func(s *Store) {
			s.PurgeKey("h/a", false)
			for range 2 {
				s.PurgeKey("h/b", false)
			}
		}, 3, true},
		{"zero looks at none", func(s *Store) { s.PurgeKey("h/a", false) }, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t, StoreConfig{})
			tt.purges(s)
			if got := s.PurgedRecently("h/a", tt.n); got != tt.want {
				t.Errorf("PurgedRecently = %v, want %v", got, tt.want)
			}
		})
	}
}
