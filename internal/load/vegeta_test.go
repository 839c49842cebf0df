package load

import (
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// TestScheduleDrivesVegeta checks that Schedule and NewTargeter work as
// vegeta's Pacer and Targeter: the Attacker sends the planned count and
// stops by itself.
func TestScheduleDrivesVegeta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hits atomic.Int64
		pn := newPipeNet()
		base, _ := url.Parse(pn.serve("origin:80", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) })))
		sched := Schedule{Base: 100, Duration: 500 * time.Millisecond}
		mix, err := NewMix(sched, 10, 1.1, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		tr := NewTargeter([]*url.URL{base}, mix, func() time.Duration { return time.Since(began) }, "")
		client := &http.Client{Transport: pn.transport()}
		var n, failed int
		for res := range vegeta.NewAttacker(vegeta.Client(client)).Attack(tr, sched, 0, "schedule") {
			n++
			if res.Error != "" {
				failed++
			}
		}
		client.CloseIdleConnections()
		pn.close(t)
		if n != 50 || failed != 0 || hits.Load() != 50 {
			t.Errorf("vegeta sent %d (%d failed, server saw %d), want 50", n, failed, hits.Load())
		}
	})
}

// TestVegetaMaxWorkers pins why the package does not use vegeta's Attacker:
// at MaxWorkers it neither sends on schedule nor reports the missed
// requests. 20 requests are due in 1 s; with one worker and a 200 ms server
// only 5 go, and none is an error. If this starts failing, vegeta changed
// and the choice in the package doc should be revisited.
func TestVegetaMaxWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		u := pn.serve("origin:80", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			time.Sleep(200 * time.Millisecond)
		}))
		client := &http.Client{Transport: pn.transport()}
		atk := vegeta.NewAttacker(vegeta.Workers(1), vegeta.MaxWorkers(1), vegeta.Client(client))
		tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: u})
		var n, failed int
		for res := range atk.Attack(tr, vegeta.ConstantPacer{Freq: 20, Per: time.Second}, time.Second, "capped") {
			n++
			if res.Error != "" {
				failed++
			}
		}
		client.CloseIdleConnections()
		pn.close(t)
		if n >= 10 || failed != 0 {
			t.Errorf("vegeta at MaxWorkers: %d results, %d errors; expected it to fall silently behind (< 10, 0)", n, failed)
		}
	})
}
