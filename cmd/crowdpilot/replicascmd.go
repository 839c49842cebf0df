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
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const replicasAbout = `Pins or caps an object's leased replicas (the autopilot's extra copies,
the owner not counted) through the admin API (needs the admin token):

  crowdpilot replicas                                  list the pins and caps
  crowdpilot replicas pin /live/match-1 3 --reason "kick-off at 20:00"
                                                       keep at least 3, whatever the rate
  crowdpilot replicas pin /live/match-1 3 --for 3h     ... for 3 hours, then back to the rate
  crowdpilot replicas cap /live/match-1 1              at most 1 (0: the owner alone)
  crowdpilot replicas clear /live/match-1              back to the rate alone

KEY is a path with its query, a URL (its path and query), or a key as
crowdpilot status and /api/v1/hot show it. N is at most --max-replicas less
the owner. A pin of 0 removes the pin; a cap keeps the pin and a pin the cap.
--for D ends the setting D from now (etcd deletes it then, on its own);
--for 0 takes an end away. Without --for, an end set before is kept.

Exit status: 0 ok; 1 refused or failed; 2 bad input.
`

// objectSetting is one entry of GET /api/v1/objects.
type objectSetting struct {
	Key     string    `json:"key"`
	Pin     int       `json:"pin"`
	Cap     *int      `json:"cap"`
	Reason  string    `json:"reason"`
	Until   time.Time `json:"until"`
	By      string    `json:"by"`
	Updated time.Time `json:"updated"`
}

// runReplicas runs "crowdpilot replicas".
func runReplicas(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The action, KEY and N come first; a negative N is N (and refused),
	// not a flag.
	var pos []string
	for len(args) > 0 && len(pos) < 3 {
		if _, err := strconv.Atoi(args[0]); strings.HasPrefix(args[0], "-") && (err != nil || len(pos) < 2) {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	fs := flag.NewFlagSet("crowdpilot replicas", flag.ContinueOnError)
	var (
		admin      = fs.String("admin", "http://127.0.0.1:9080", "admin URL (or host:port) of any node")
		adminToken = fs.String("admin-token", "", "admin bearer token")
		reason     = fs.String("reason", "", "why, kept with the setting and shown in the events")
		lasts      = fs.Duration("for", 0, "with pin or cap: the setting ends this long from now, e.g. 3h (0: no end)")
	)
	if err := parseFlags(fs, args, stdout, "crowdpilot replicas [pin KEY N | cap KEY N | clear KEY] [flags]", strings.TrimSpace(replicasAbout), "reason"); err != nil {
		return badInput(stderr, "replicas", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	base := strings.TrimSpace(*admin)
	if base == "" {
		return badInput(stderr, "replicas", errors.New("--admin is empty"))
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	verb := "list"
	if len(pos) > 0 {
		verb = pos[0]
	} else {
		pos = []string{verb}
	}
	want := map[string]int{"list": 1, "pin": 3, "cap": 3, "clear": 2} // with the action
	n, ok := want[verb]
	switch {
	case !ok:
		return badInput(stderr, "replicas", fmt.Errorf("unknown action %q: want pin, cap, clear or none (list)", verb))
	case len(pos) != n && verb == "clear":
		return badInput(stderr, "replicas", errors.New("clear needs KEY: crowdpilot replicas clear /live/match-1"))
	case len(pos) != n && verb != "list":
		return badInput(stderr, "replicas", fmt.Errorf("%s needs KEY and N: crowdpilot replicas %s /live/match-1 2", verb, verb))
	case len(pos) != n:
		return badInput(stderr, "replicas", fmt.Errorf("unexpected argument %q (list takes none)", pos[n]))
	case given["reason"] && (verb == "list" || verb == "clear"):
		return badInput(stderr, "replicas", fmt.Errorf("--reason goes with pin or cap, not %s", verb))
	case given["for"] && (verb == "list" || verb == "clear"):
		return badInput(stderr, "replicas", fmt.Errorf("--for goes with pin or cap, not %s", verb))
	case *lasts < 0:
		return badInput(stderr, "replicas", fmt.Errorf("--for %v: want a duration >= 0 such as 3h (0: no end)", *lasts))
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := &http.Client{}
	var req *http.Request
	var err error
	switch verb {
	case "list":
		return listObjects(ctx, c, base, *adminToken, stdout, stderr)
	case "pin", "cap":
		v, err := strconv.Atoi(pos[2])
		if err != nil || v < 0 {
			return badInput(stderr, "replicas", fmt.Errorf("N %q: want a whole number >= 0 such as 2", pos[2]))
		}
		body := map[string]any{"key": pos[1], verb: v}
		if given["reason"] {
			body["reason"] = *reason
		}
		if given["for"] {
			body["for"] = nil // no end
			if *lasts > 0 {
				body["for"] = lasts.String()
			}
		}
		b, _ := json.Marshal(body)
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, base+"/api/v1/objects", bytes.NewReader(b))
	case "clear":
		req, err = http.NewRequestWithContext(ctx, http.MethodDelete, base+"/api/v1/objects?key="+url.QueryEscape(pos[1]), nil)
	}
	if err != nil {
		return badInput(stderr, "replicas", fmt.Errorf("--admin %q: %w", *admin, err))
	}
	rb, exit := adminDo(c, req, *adminToken, "replicas", base, stderr)
	if exit >= 0 {
		return exit
	}
	var set objectSetting
	json.Unmarshal(rb, &set)
	fmt.Fprintf(stdout, "%s: %s\n", set.Key, limitsText(set))
	return 0
}

// limitsText says what a setting keeps.
func limitsText(s objectSetting) string {
	var parts []string
	if s.Pin > 0 {
		parts = append(parts, fmt.Sprintf("pinned at %d", s.Pin))
	}
	if s.Cap != nil {
		parts = append(parts, fmt.Sprintf("capped at %d", *s.Cap))
	}
	if len(parts) == 0 {
		return "no pin or cap (the rate alone)"
	}
	if !s.Until.IsZero() {
		return strings.Join(parts, ", ") + " leased replicas until " + s.Until.UTC().Format(time.RFC3339)
	}
	return strings.Join(parts, ", ") + " leased replicas"
}

func listObjects(ctx context.Context, c *http.Client, base, token string, stdout, stderr io.Writer) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/objects", nil)
	if err != nil {
		fmt.Fprintf(stderr, "crowdpilot replicas: %v\n", err)
		return 2
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token) // full keys, query values included
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "crowdpilot replicas: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	var list struct {
		Objects []objectSetting `json:"objects"`
		Max     int             `json:"max"`
		Error   string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&list); err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "crowdpilot replicas: GET %s/api/v1/objects: %d %s\n", base, resp.StatusCode, orDash(list.Error))
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tPIN\tCAP\tUNTIL\tUPDATED\tREASON\n")
	for _, o := range list.Objects {
		capText := "-"
		if o.Cap != nil {
			capText = strconv.Itoa(*o.Cap)
		}
		pin := "-"
		if o.Pin > 0 {
			pin = strconv.Itoa(o.Pin)
		}
		updated := "-"
		if !o.Updated.IsZero() {
			updated = o.Updated.UTC().Format(time.RFC3339)
		}
		until := "-"
		if !o.Until.IsZero() {
			until = o.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Key, pin, capText, until, updated, orDash(o.Reason))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d of at most %d settings\n", len(list.Objects), list.Max)
	return 0
}
