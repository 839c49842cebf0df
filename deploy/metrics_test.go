package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/node"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs parses the dashboard and returns its queries by where
// they are, checking what a Grafana import needs.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "crowdpilot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/crowdpilot.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 || len(d.Panels) == 0 {
		t.Fatalf("dashboard: title %q uid %q schemaVersion %d, %d panels", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	exprs := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource is not the dashboard's ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		for _, q := range p.Targets {
			exprs[fmt.Sprintf("panel %q query %s", p.Title, q.RefID)] = q.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs["variable "+v.Name] = v.Definition
		}
	}
	return exprs
}

// alertExprs returns the expressions of alerts.yml by alert name.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("prometheus/alerts.yml: %v", err)
	}
	exprs := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	if len(exprs) == 0 {
		t.Fatal("prometheus/alerts.yml has no rules")
	}
	return exprs
}

var metricName = regexp.MustCompile(`\bcrowdpilot_[a-zA-Z0-9_]+`)

// TestDashboardAndAlertsUseExportedMetrics runs a real node (embedded etcd,
// loopback origin), makes it hit, miss and shed, and checks that every
// crowdpilot_* series the dashboard and the alert rules name is on its
// /metrics.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedSeries(t)
	exprs := dashboardExprs(t)
	for k, v := range alertExprs(t) {
		exprs[k] = v
	}
	used := map[string]bool{}
	for where, expr := range exprs {
		for _, name := range metricName.FindAllString(expr, -1) {
			used[name] = true
			if !exported[name] {
				t.Errorf("%s: %s is not exported by a node", where, name)
			}
		}
	}
	// The figures the issue asks to watch are all on the dashboard.
	for _, name := range []string{"crowdpilot_requests_total", "crowdpilot_origin_fetches_total", "crowdpilot_shed_total", "crowdpilot_replicas_active", "crowdpilot_queue_depth",
		"crowdpilot_hot_object_requests_total", "crowdpilot_hot_object_origin_fetches_total", "crowdpilot_hot_objects_unexported_total"} {
		if !used[name] {
			t.Errorf("neither the dashboard nor the alerts use %s", name)
		}
	}
}

// exportedSeries returns the sample names on a live node's /metrics.
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	ctx := t.Context()
	etcd, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)

	// An origin that answers /slow only when the request is given up.
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hello")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })

	cfg := node.DefaultConfig()
	cfg.ID, cfg.Etcd = "n0", []string{etcd.ClientURL()}
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Origin = "http://" + ln.Addr().String()
	cfg.OriginTimeout = 200 * time.Millisecond
	cfg.StoreBytes = 16 << 20
	cfg.AdminToken = "secret"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.SharesProcess = true
	// /a is hot from 1 request/s, so the per-object series appear.
	cfg.Autopilot = autopilot.Config{TargetRPS: 2}
	nd, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Shutdown(t.Context()) })
	testwait.Eventually(t, 10*time.Second, "node ready", nd.Ready)

	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	get := func(url string) int {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	data := "http://" + nd.DataAddr()
	for _, c := range []struct {
		path string
		want int
	}{{"/a", 200}, {"/a", 200}, {"/slow", 503}} { // miss, hit, origin timeout (shed)
		if got := get(data + c.path); got != c.want {
			t.Fatalf("GET %s: %d, want %d", c.path, got, c.want)
		}
	}

	names := map[string]bool{}
	testwait.Eventually(t, 10*time.Second, "the leader's and the hot object's series on /metrics", func() bool {
		get(data + "/a") // keeps /a hot
		resp, err := client.Get("http://" + nd.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			if i := strings.IndexAny(line, "{ "); i > 0 {
				names[line[:i]] = true
			}
		}
		return names["crowdpilot_shed_total"] && names["crowdpilot_autopilot_leader"] && names["crowdpilot_hot_object_requests_total"]
	})
	return names
}

// TestDashboardQueriesParse hands the dashboard's queries, as recording
// rules, to promtool. PROMTOOL names it when it is not on PATH (.ci/run
// sets it).
func TestDashboardQueriesParse(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Skip("no promtool (set PROMTOOL, or install Debian's prometheus package)")
		}
	}
	exprs := dashboardExprs(t)
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		if strings.HasPrefix(k, "panel ") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var rules bytes.Buffer
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, k := range keys {
		// Grafana's variables, as Grafana would substitute them.
		e := strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$instance", ".*").Replace(exprs[k])
		q, _ := json.Marshal(e)
		fmt.Fprintf(&rules, "      - record: dashboard:q%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(path, rules.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s", len(keys), err, out)
	}
}
