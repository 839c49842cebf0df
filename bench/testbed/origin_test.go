package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

func TestOriginLogsHotFetches(t *testing.T) {
	o := demo.New(demo.Config{Latency: time.Millisecond, Capacity: 2})
	fl := &fetchLog{counts: map[string]int32{}}
	srv := httptest.NewServer(originHandler(o, &hotLog{path: "/live/match-1"}, fl))
	defer srv.Close()
	get := func(path string, hdr ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/live/match-1"); c != http.StatusOK {
		t.Fatalf("hot GET: %d", c)
	}
	if c := get("/live/match-1", "If-None-Match", `"v0"`); c != http.StatusNotModified {
		t.Fatalf("hot revalidation: %d", c)
	}
	get("/other")
	o.SetDown(true)
	get("/live/match-1") // 503: not a fetch

	resp, err := http.Get(srv.URL + "/_testbed/hot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hs hotStats
	if err := json.NewDecoder(resp.Body).Decode(&hs); err != nil {
		t.Fatal(err)
	}
	if len(hs.TimesMs) != 2 || hs.Path != "/live/match-1" {
		t.Errorf("hot log %+v; want 2 fetches (the 200 and the 304) of /live/match-1", hs)
	}
	if got := o.FetchesOf("/live/match-1"); got != int64(len(hs.TimesMs)) {
		t.Errorf("origin counts %d hot fetches, the log %d", got, len(hs.TimesMs))
	}
	// Three fetches (the 200, the 304 and /other) of two objects: one repeat.
	if st := fl.snapshot(); st.Fetches != 3 || st.Objects != 2 || st.Repeats != 1 || st.Dropped != 0 {
		t.Errorf("fetch counts %+v; want 3 fetches of 2 objects, 1 repeat", st)
	}
}
