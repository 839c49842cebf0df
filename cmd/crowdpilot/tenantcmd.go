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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

const tenantAbout = `Without NAME, lists the declared tenants: size, bounds, hold, node set.
With NAME and no setting, prints the tenant as JSON. With settings, changes
the tenant through PUT /api/v1/tenants/NAME (needs the admin token):

  crowdpilot tenant news --size 9 --hold --reason "ticket sale"
  crowdpilot tenant news --min 6 --max 30
  crowdpilot tenant whale --labels hw=dedicated --exclude n2
  crowdpilot tenant news --no-hold --reset size,labels   (back to automatic and the file)

Exit status: 0 ok; 1 refused or failed; 2 bad input.
`

// runTenant runs "crowdpilot tenant".
func runTenant(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("crowdpilot tenant", flag.ContinueOnError)
	var (
		admin      = fs.String("admin", "http://127.0.0.1:9080", "admin URL (or host:port) of any node")
		adminToken = fs.String("admin-token", "", "admin bearer token")
		size       = fs.Int("size", 0, "set the node set size (capacity by hand)")
		hold       = fs.Bool("hold", false, "keep the size: the capacity manager neither grows nor shrinks it")
		noHold     = fs.Bool("no-hold", false, "let the capacity manager size it again")
		minN       = fs.Int("min", 0, "override the declared min")
		maxN       = fs.Int("max", 0, "override the declared max")
		labels     = fs.String("labels", "", "isolate on nodes with these labels, name=value,...")
		pin        = fs.String("pin", "", "nodes always in its set, comma-separated")
		exclude    = fs.String("exclude", "", "nodes never in its set, comma-separated")
		reset      = fs.String("reset", "", "overrides to clear, back to the file: size,min,max,labels,pin,exclude")
		reason     = fs.String("reason", "", "why, kept with the record")
	)
	if err := parseFlags(fs, args, stdout, "crowdpilot tenant [NAME] [flags]", strings.TrimSpace(tenantAbout)); err != nil {
		return badInput(stderr, "tenant", err)
	}
	if fs.NArg() > 0 {
		return badInput(stderr, "tenant", fmt.Errorf("unexpected argument %q (the tenant name goes first)", fs.Arg(0)))
	}
	if name != "" {
		if err := tenant.ValidName(name); err != nil {
			return badInput(stderr, "tenant", err)
		}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	tok := *adminToken
	base := strings.TrimSpace(*admin)
	if base == "" {
		return badInput(stderr, "tenant", errors.New("--admin is empty"))
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}

	body := map[string]any{}
	if given["size"] {
		body["size"] = *size
	}
	if given["hold"] && given["no-hold"] {
		return badInput(stderr, "tenant", errors.New("--hold and --no-hold together"))
	}
	if given["hold"] {
		body["hold"] = *hold
	}
	if given["no-hold"] {
		body["hold"] = !*noHold
	}
	if given["min"] {
		body["min"] = *minN
	}
	if given["max"] {
		body["max"] = *maxN
	}
	if given["labels"] {
		var lf labelsFlag
		if err := lf.Set(*labels); err != nil {
			return badInput(stderr, "tenant", fmt.Errorf("--labels: %w", err))
		}
		m := lf.m
		if m == nil {
			m = map[string]string{} // --labels "": no isolation
		}
		body["labels"] = m
	}
	if given["pin"] {
		body["pin"] = splitList(*pin)
	}
	if given["exclude"] {
		body["exclude"] = splitList(*exclude)
	}
	for _, f := range splitList(*reset) {
		switch f {
		case "size", "min", "max", "labels", "pin", "exclude":
			if _, ok := body[f]; ok {
				return badInput(stderr, "tenant", fmt.Errorf("--reset %s and --%s together", f, f))
			}
			body[f] = nil
		default:
			return badInput(stderr, "tenant", fmt.Errorf("--reset %q: want size, min, max, labels, pin or exclude", f))
		}
	}
	if given["reason"] {
		body["reason"] = *reason
	}
	if len(body) > 0 && name == "" {
		return badInput(stderr, "tenant", errors.New("settings need a tenant name first: crowdpilot tenant NAME --size 6"))
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := &http.Client{}
	switch {
	case name == "":
		return listTenants(ctx, c, base, stdout, stderr)
	case len(body) == 0:
		var v json.RawMessage
		if _, err := getJSON(ctx, c, base+"/api/v1/tenants/"+name, &v); err != nil {
			fmt.Fprintf(stderr, "crowdpilot tenant: %v\n", err)
			return 1
		}
		var out bytes.Buffer
		json.Indent(&out, v, "", "  ")
		fmt.Fprintln(stdout, out.String())
		return 0
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/api/v1/tenants/"+name, bytes.NewReader(b))
	if err != nil {
		return badInput(stderr, "tenant", err)
	}
	rb, exit := adminDo(c, req, tok, "tenant", base, stderr)
	if exit >= 0 {
		return exit
	}
	var v struct {
		Size int  `json:"size"`
		Hold bool `json:"hold"`
		Min  int  `json:"min"`
		Max  *int `json:"max"`
	}
	json.Unmarshal(rb, &v)
	fmt.Fprintf(stdout, "tenant %s: size %d%s, min %d, max %s\n", name, v.Size, map[bool]string{true: " (held)"}[v.Hold], v.Min, maxText(v.Max))
	return 0
}

func listTenants(ctx context.Context, c *http.Client, base string, stdout, stderr io.Writer) int {
	var list struct {
		Tenants []struct {
			Name     string            `json:"name"`
			Size     int               `json:"size"`
			Hold     bool              `json:"hold"`
			Min      int               `json:"min"`
			Max      *int              `json:"max"`
			Labels   map[string]string `json:"labels"`
			Nodes    []string          `json:"nodes"`
			Fallback bool              `json:"fallback"`
		} `json:"tenants"`
	}
	if _, err := getJSON(ctx, c, base+"/api/v1/tenants", &list); err != nil {
		fmt.Fprintf(stderr, "crowdpilot tenant: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TENANT\tSIZE\tMIN\tMAX\tHOLD\tISOLATION\tNODES\n")
	for _, t := range list.Tenants {
		iso := orDash(labelsText(t.Labels))
		if t.Fallback {
			iso += " (no node: all)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v\t%s\t%s\n", t.Name, t.Size, t.Min, maxText(t.Max), t.Hold, iso, strings.Join(t.Nodes, ","))
	}
	tw.Flush()
	return 0
}

func labelsText(m map[string]string) string {
	f := labelsFlag{m: m}
	return f.String()
}

func maxText(m *int) string {
	if m == nil {
		return "-"
	}
	return strconv.Itoa(*m)
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
