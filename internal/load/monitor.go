package load

import (
	"context"
	"fmt"
	"time"
)

// monitor owns the per-second work: the progress line and, with admins, the
// scrapes. It closes lastScrape after scraping the schedule's last second,
// and returns when ctx ends.
func (g *Generator) monitor(ctx context.Context, start time.Time, rec *recorder, lastScrape chan<- struct{}) {
	seconds := len(rec.secs)
	closed := false
	var poller *adminPoller
	if len(g.cfg.Admins) > 0 {
		poller = newAdminPoller(g.client, g.cfg.Admins, g.cfg.Hot)
		pctx, cancel := context.WithTimeout(ctx, adminTimeout)
		poller.poll(pctx) // the baseline for the first second's counter delta
		cancel()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		elapsed := time.Since(start)
		if poller != nil {
			pctx, cancel := context.WithTimeout(ctx, adminTimeout)
			fetches, replicas := poller.poll(pctx)
			cancel()
			i := int((elapsed+time.Second/2)/time.Second) - 1
			rec.setAdmin(i, fetches, replicas)
			if i >= seconds-1 && !closed {
				close(lastScrape)
				closed = true
			}
		}
		if g.cfg.Progress != nil {
			s := rec.snapshot()
			p99 := "-"
			if s.Answered+s.Errors.Timeout+s.Errors.Transport > 0 {
				p99 = s.p99.Round(10 * time.Microsecond).String()
			}
			fmt.Fprintf(g.cfg.Progress, "\r%6s / %-6s  sent %6d/s  not sent (generator) %6d/s  answered %6d/s  cluster errors %6d/s  p99 %-9s  in flight %d   ",
				elapsed.Round(time.Second), g.cfg.Schedule.Duration,
				s.Sent, s.NotSent, s.Answered, s.Errors.Total(), p99, s.inflight)
		}
	}
}
