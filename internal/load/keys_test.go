package load

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func TestMix(t *testing.T) {
	s := time.Second
	sched := Schedule{Base: 100, Duration: 10 * s, Crowd: Crowd{Multiplier: 5, Start: 2 * s, Hold: 2 * s}}
	mix, err := NewMix(sched, 1000, 1.1, []string{"/live/a", "/live/b"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	count := func(at time.Duration) (hot int, ranks map[int]int) {
		ranks = map[int]int{}
		for range n {
			p := mix.Path(at)
			if strings.HasPrefix(p, "/live/") {
				hot++
				continue
			}
			r, err := strconv.Atoi(strings.TrimPrefix(p, "/obj/"))
			if err != nil || r < 0 || r >= 1000 {
				t.Fatalf("path %q is not in the catalogue", p)
			}
			ranks[r]++
		}
		return hot, ranks
	}
	if hot, ranks := count(time.Second); hot != 0 || ranks[0] < ranks[1] || ranks[1] < ranks[10] {
		t.Errorf("before the crowd: %d hot, rank counts 0:%d 1:%d 10:%d; want no hot and Zipf order", hot, ranks[0], ranks[1], ranks[10])
	}
	// At 5×, 4 of every 5 requests are the crowd's.
	if hot, _ := count(3 * s); !within(int64(hot), n*4/5, 0.02) {
		t.Errorf("during the crowd: %d of %d hot, want 4/5", hot, n)
	}
	if _, err := NewMix(sched, 0, 1.1, nil, 1); err == nil {
		t.Error("NewMix with 0 keys: no error")
	}
	if _, err := NewMix(sched, 10, 1, nil, 1); err == nil {
		t.Error("NewMix with exponent 1: no error")
	}
}

func TestTargeterRoundRobin(t *testing.T) {
	a, _ := url.Parse("http://a:1")
	b, _ := url.Parse("http://b:2/prefix/")
	mix, err := NewMix(Schedule{Base: 1, Duration: time.Second}, 1, 1.1, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTargeter([]*url.URL{a, b}, mix, func() time.Duration { return 0 }, "")
	var got []string
	for range 3 {
		var tgt vegeta.Target
		if err := tr(&tgt); err != nil {
			t.Fatal(err)
		}
		if tgt.Method != "GET" {
			t.Errorf("method %q", tgt.Method)
		}
		got = append(got, tgt.URL)
	}
	if want := "http://a:1/obj/0 http://b:2/prefix/obj/0 http://a:1/obj/0"; strings.Join(got, " ") != want {
		t.Errorf("targets %q, want %q", got, want)
	}
}

// TestTargeterHost: with a host, every request vegeta builds carries it as
// its Host (the site of a multi-site cluster), whatever the target URL.
func TestTargeterHost(t *testing.T) {
	a, _ := url.Parse("http://127.0.0.1:1")
	mix, err := NewMix(Schedule{Base: 1, Duration: time.Second}, 1, 1.1, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"news.example", ""} {
		tr := NewTargeter([]*url.URL{a}, mix, func() time.Duration { return 0 }, host)
		var tgt vegeta.Target
		if err := tr(&tgt); err != nil {
			t.Fatal(err)
		}
		req, err := tgt.Request()
		if err != nil {
			t.Fatal(err)
		}
		want := host
		if want == "" {
			want = "127.0.0.1:1"
		}
		if req.Host != want {
			t.Errorf("host %q: request Host %q, want %q", host, req.Host, want)
		}
	}
	if _, err := New(Config{Targets: []string{"http://127.0.0.1:1"}, Schedule: Schedule{Base: 1, Duration: time.Second}, Host: "bad host"}); err == nil || !strings.Contains(err.Error(), `host "bad host"`) {
		t.Errorf("New with a bad host: %v, want an error naming it", err)
	}
}
