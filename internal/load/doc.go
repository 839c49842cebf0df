// Package load is the open-loop flash-crowd load generator.
//
// Open loop means requests leave on a fixed schedule whatever the latency,
// so a slow server cannot make the load look lighter than planned (no
// coordinated omission). The schedule is a Schedule: a baseline rate and an
// optional Crowd (a multiplier with ramp, hold and decay). Schedule
// implements vegeta's Pacer, and request n is planned at Schedule.At(n).
// Paths come from a Mix (a Zipf catalogue plus the crowd's hot objects)
// through a vegeta Targeter; requests are built by vegeta.Target.Request.
//
// The sending loop is ours, not vegeta's Attacker. Once MaxWorkers are
// busy, the Attacker blocks its pacer until a worker frees up: requests due
// meanwhile leave late (or never, if the attack ends first) and none is
// reported as an error; and each Result is timed from when a worker picked it
// up, not from when it was due. So with a cap on in-flight requests, a stall
// quietly lowers the load and its latency leaves out the wait: the
// coordinated omission this tool exists to avoid (TestVegetaMaxWorkers
// pins that behaviour). Our loop sleeps until each planned time and hands the
// request to an idle worker, starting a new one if none is idle, up to
// Config.MaxInflight workers; at the cap the request is not sent and counts
// as Counts.NotSent, so nothing waits for a free slot. Latency is measured from
// the planned send time, not the actual one, so if the generator itself
// falls behind (GC, CPU) the lateness shows in the latencies, and
// Report.Generator says how late it sent.
//
// Each request is attributed to the second it was planned in. Latencies go
// into HDR histograms (1 µs to 60 s, 3 significant figures) for the whole
// run, each phase (before, during, after the crowd) and each second; a
// second's histogram is reduced to percentiles and recycled once none of its
// requests can still complete. Every sent request is in the histograms,
// errors included (a timeout adds its wait), so read latencies next to the
// error counts. The run ends by itself at the end of the schedule plus a
// drain of at most min(Timeout, 5 s); requests still out are then cut and
// count as timeouts.
//
// Requests go out through connTransport (unless Config.Transport is set):
// each worker writes its request and reads the answer itself, over a
// kept-alive connection from a bounded pool, with net/http's Request.Write
// and ReadResponse. net/http's Transport passes every request through two
// goroutines of its connection; on a 2-core machine shared with the
// cluster under test, that cost the generator about a fifth more CPU and
// stalls of its own at a crowd's first instant, which it then reported as
// the cluster's latency (bench/RESULTS.md, session 11).
package load
