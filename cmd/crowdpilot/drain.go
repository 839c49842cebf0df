package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// drainMember is what POST /api/v1/drain answers: the member's view.
type drainMember struct {
	ID    string `json:"id"`
	Admin string `json:"admin"`
	State string `json:"state"`
}

// drainState is GET /api/v1/drain on the drained node itself.
type drainState struct {
	Node         string `json:"node"`
	Draining     bool   `json:"draining"`
	InFlight     int64  `json:"in_flight"`
	PeerRequests int64  `json:"peer_requests"`
	PeeksHeld    int64  `json:"peeks_held"`
}

const drainAbout = `Drains a node: marks it draining through the admin API (routers stop
sending it keys, and the new owners take its keys from it), then waits until
it serves nothing: no data request in flight and no forward reaching it for
--quiet. Exit status 0 when drained (or undrained with --undo), 1 when
refused, failed or still serving after --wait, 2 for bad input.`

// runDrain runs "crowdpilot drain": marks a node draining through the
// admin API (routers stop sending it keys; new owners take its keys from
// it), then waits until it serves nothing: no data request in flight and
// no forward reaching it for --quiet. Exit status: 0 drained (or, with
// --undo, undrained); 1 refused, failed, or still serving after --wait;
// 2 bad input.
func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crowdpilot drain", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9080", "admin address (host:port or URL) of any node")
	token := fs.String("token", "", "admin bearer token")
	node := fs.String("node", "", "ID of the node to drain (empty: the node at --admin)")
	wait := fs.Duration("wait", 30*time.Second, "wait up to this long for the node to serve nothing (0: mark it and return)")
	quiet := fs.Duration("quiet", time.Second, "how long no forward may reach the node for it to count as drained")
	undo := fs.Bool("undo", false, "undrain: routers send the node keys again")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each admin call")
	if err := parseFlags(fs, args, stdout, "crowdpilot drain [--admin host:port] --token T [--node ID] [flags]", drainAbout); err != nil {
		return badInput(stderr, "drain", err)
	}
	if fs.NArg() > 0 {
		return badInput(stderr, "drain", fmt.Errorf("unexpected argument %q (name the node with --node)", fs.Arg(0)))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if v, ok := os.LookupEnv("CROWDPILOT_ADMIN"); ok && !given["admin"] {
		*admin = v
	}
	if v, ok := os.LookupEnv("CROWDPILOT_ADMIN_TOKEN"); ok && !given["token"] {
		*token = v
	}
	switch {
	case strings.TrimSpace(*admin) == "":
		return badInput(stderr, "drain", errors.New("--admin is empty"))
	case *token == "":
		return badInput(stderr, "drain", errors.New("--token is required (or $CROWDPILOT_ADMIN_TOKEN)"))
	case *wait < 0:
		return badInput(stderr, "drain", fmt.Errorf("--wait %v is negative", *wait))
	case *quiet <= 0:
		return badInput(stderr, "drain", fmt.Errorf("--quiet %v must be positive", *quiet))
	case *timeout <= 0:
		return badInput(stderr, "drain", fmt.Errorf("--timeout %v must be positive", *timeout))
	}
	client := &http.Client{Timeout: *timeout}

	m, err := postDrain(ctx, client, adminURL(*admin), *token, *node, !*undo)
	if err != nil {
		fmt.Fprintf(stderr, "crowdpilot drain: %v\n", err)
		return 1
	}
	switch {
	case *undo:
		fmt.Fprintf(stdout, "%s is %s: routers send it keys again\n", m.ID, m.State)
		return 0
	case *wait == 0:
		fmt.Fprintf(stdout, "%s is %s (not waiting: --wait 0)\n", m.ID, m.State)
		return 0
	}
	return waitDrained(ctx, client, m, *wait, *quiet, stdout, stderr)
}

// waitDrained polls the node's own drain status until it has had nothing
// in flight and no forward for quiet, or wait has passed.
func waitDrained(ctx context.Context, client *http.Client, m drainMember, wait, quiet time.Duration, stdout, stderr io.Writer) int {
	url := adminURL(m.Admin) + "/api/v1/drain"
	start := time.Now()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(min(quiet/4, 250*time.Millisecond))
	defer tick.Stop()
	var first, last drainState
	var lastChange time.Time // when a forward last reached it (or it had work in flight)
	for polls := 0; ; polls++ {
		var st drainState
		if _, err := getJSON(ctx, client, url, &st); err != nil {
			fmt.Fprintf(stderr, "crowdpilot drain: %s stopped answering (it may have shut down): %v\n", m.ID, err)
			return 1
		}
		now := time.Now()
		switch {
		case polls == 0:
			first, lastChange = st, now
		case st.PeerRequests != last.PeerRequests || st.InFlight > 0 || !st.Draining:
			lastChange = now
		case now.Sub(lastChange) >= quiet:
			fmt.Fprintf(stdout, "%s drained in %s: nothing in flight and no forward for %s (it answered %d peer requests and handed %d keys to their new owners while draining)\n",
				m.ID, now.Sub(start).Round(10*time.Millisecond), quiet, st.PeerRequests-first.PeerRequests, st.PeeksHeld-first.PeeksHeld)
			return 0
		}
		last = st
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "crowdpilot drain: interrupted; %s stays draining (undo with --undo)\n", m.ID)
			return 1
		case <-deadline.C:
			fmt.Fprintf(stderr, "crowdpilot drain: %s still serving after %s: %d requests in flight, last forward %s ago (it stays draining)\n",
				m.ID, wait, last.InFlight, time.Since(lastChange).Round(10*time.Millisecond))
			return 1
		case <-tick.C:
		}
	}
}

// postDrain marks node (empty: the one at base) draining or not.
func postDrain(ctx context.Context, client *http.Client, base, token, node string, draining bool) (drainMember, error) {
	var m drainMember
	body, _ := json.Marshal(map[string]any{"node": node, "draining": draining})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/drain", bytes.NewReader(body))
	if err != nil {
		return m, fmt.Errorf("drain through %s: %w", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return m, fmt.Errorf("drain through %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return m, fmt.Errorf("refused by %s (%d): %s", base, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(b, &m); err != nil || m.ID == "" || m.Admin == "" {
		return m, fmt.Errorf("drain through %s: unexpected answer %q", base, strings.TrimSpace(string(b)))
	}
	return m, nil
}

// adminURL turns a host:port (or URL) into a base URL without a trailing /.
func adminURL(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return s
}
