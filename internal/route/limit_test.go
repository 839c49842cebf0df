package route

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAdmitRefusesAtTheLimit: with the peer's limit full, Admit refuses
// within MaxWait, sends nothing, and does not put the peer under suspicion;
// once a forward ends there is room again.
func TestAdmitRefusesAtTheLimit(t *testing.T) {
	r := NewRouter(Config{Self: "a", PeerLimit: PeerLimit{Min: 1, Initial: 1, Max: 1, MaxWait: 5 * time.Millisecond}})
	r.SetPeers([]Peer{{ID: "a", Addr: "a:1"}, {ID: "b", Addr: "b:1"}})
	var target Target
	for h := uint64(0); ; h++ {
		if p := r.Plan(h, nil); !p.Local {
			target = p.Targets[0]
			break
		}
	}
	ctx := context.Background()
	done, err := r.Admit(ctx, target)
	if err != nil {
		t.Fatalf("first forward refused: %v", err)
	}
	var refused int
	for range 10 {
		if _, err := r.Admit(ctx, target); errors.Is(err, ErrPeerBusy) {
			refused++
		} else if err == nil {
			t.Fatal("a forward was admitted past a full limit")
		}
	}
	if refused != 10 {
		t.Errorf("refused %d of 10 forwards past the limit", refused)
	}
	if r.Suspected("b") {
		t.Error("refusals put the peer under suspicion")
	}
	if got := r.InFlight("b"); got != 1 {
		t.Errorf("in flight = %d, want 1 (refused forwards count nothing)", got)
	}
	done(nil)
	done2, err := r.Admit(ctx, target)
	if err != nil {
		t.Fatalf("no room after the forward ended: %v", err)
	}
	done2(nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	done3, _ := r.Admit(ctx, target)
	if _, err := r.Admit(cctx, target); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	done3(nil)
}
