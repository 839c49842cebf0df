package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/tenant"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// browserCrowdMax bounds the requests the browser test's crowd sends.
const browserCrowdMax = 30000

// TestDashboardInBrowser loads /ui/ in a real headless Chromium against a
// 3-node cluster: no console errors, exceptions or CSP violations, the
// charts move while a crowd is driven, a purge typed into the page reaches
// every node, the tenants table shows a tenant's node set and a limit set
// from it reaches the API and routing, a pin and a cap set from the page
// reach the API, and a node drained from the page leaves routing.
// A full-page screenshot is kept: in $CROWDPILOT_ARTIFACTS if set, else in
// the test's temporary directory (the path is logged).
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CROWDPILOT_REQUIRE_BROWSER") == "1" {
			t.Fatalf("CROWDPILOT_REQUIRE_BROWSER=1 but %s is missing: %v", chromiumPath, err)
		}
		t.Skipf("%s not installed (apt-get install chromium); set CROWDPILOT_REQUIRE_BROWSER=1 to fail instead", chromiumPath)
	}
	// A tenant no request of the crowd resolves to, so routing of the
	// crowd is as without tenants.
	tenants, err := tenant.Parse([]byte("tenants: {news: {hosts: [news.example], min: 1, max: 3}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Minute, Capacity: 64}, func(c *Config) {
		c.Autopilot = autopilot.Config{TargetRPS: 50, MaxReplicas: 3, ReplicaTTL: 10 * time.Second}
		c.ReportInterval = 200 * time.Millisecond
		c.Tenants = tenants
	})
	eventually(t, 15*time.Second, func() string {
		if leader, _, err := tc.hot(0); err != nil || leader == "" {
			return fmt.Sprintf("no autopilot leader yet (%v)", err)
		}
		return ""
	})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1300),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Everything the page reports as wrong, collected until the end.
	var mu sync.Mutex // guards problems
	var problems []string
	report := func(s string) { mu.Lock(); problems = append(problems, s); mu.Unlock() }
	var listeners sync.WaitGroup
	defer listeners.Wait() // after cancelBrowser, which ends the iterations
	defer cancelBrowser()
	console := chromedp.Events(bctx, runtime.ConsoleAPICalled)
	exceptions := chromedp.Events(bctx, runtime.ExceptionThrown)
	logs := chromedp.Events(bctx, cdplog.EntryAdded)
	listeners.Add(3)
	go func() {
		defer listeners.Done()
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				report(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		}
	}()
	go func() {
		defer listeners.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			report("exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		}
	}()
	go func() {
		defer listeners.Done()
		for ev, err := range logs {
			if err != nil {
				return
			}
			e := ev.Entry
			// Network entries are the status of API calls the page handles
			// (a 503 while no leader is known); the rest (CSP violations,
			// JavaScript, deprecations) count.
			if e.Source != cdplog.EntrySourceNetwork && (e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning) {
				report(fmt.Sprintf("log %s %s: %s %s", e.Source, e.Level, e.Text, e.URL))
			}
		}
	}()

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	run("enable log domain", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	}))
	run("load the dashboard via /",
		chromedp.Navigate(tc.admin(0, "/")),
		chromedp.WaitVisible(chromedp.ID("members")),
		chromedp.Poll[chromedp.Void](`location.pathname === "/ui/" && document.querySelectorAll("#members tbody tr").length === 3`,
			chromedp.WithPollingTimeout(15*time.Second)),
	)

	// A crowd on one object, through every node, bounded in count and by
	// the test's context.
	const hotPath = "/live/match-1"
	var sent atomic.Int64
	stop := make(chan struct{})
	var crowd sync.WaitGroup
	for w := range 8 {
		crowd.Add(1)
		go func() {
			defer crowd.Done()
			for i := 0; sent.Add(1) <= browserCrowdMax; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				tc.get(tc.url((w+i)%3, hotPath))
			}
		}()
	}
	endCrowd := sync.OnceFunc(func() { close(stop); crowd.Wait() })
	defer endCrowd()

	// The charts move: requests/s and hit ratio show the crowd.
	run("charts move under the crowd",
		chromedp.Poll[chromedp.Void](`(() => {
			const r = document.getElementById("chart-req").dataset, h = document.getElementById("chart-hit").dataset;
			return Number(r.points) >= 3 && Number(r.max) >= 20 && Number(h.last) >= 0.5;
		})()`, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)),
	)
	// Show the hot object once the leader lists it (replicas need the crowd
	// to reach the target rate, which a busy machine may not; not asserted).
	hotSeen, _ := chromedp.Run(bctx, chromedp.Poll[bool](`document.querySelectorAll("#hot tbody tr").length > 0`,
		chromedp.WithPollingTimeout(5*time.Second)))
	endCrowd()
	t.Logf("crowd sent %d requests; hot table filled: %v", min(sent.Load(), browserCrowdMax), hotSeen)

	// Purge by key from the page. The object changes at the origin first:
	// the cluster still serves the cached old version until the purge.
	old := tc.version(0, hotPath)
	tc.origin.Update(hotPath)
	for i := range 3 {
		if v := tc.version(i, hotPath); v != old {
			t.Fatalf("n%d serves version %d before the purge, want the cached %d", i, v, old)
		}
	}
	run("purge from the page",
		chromedp.SendKeys(chromedp.ID("token"), "secret"),
		chromedp.Click(chromedp.ID("token-save")),
		chromedp.Poll[chromedp.Void](`sessionStorage.getItem("crowdpilot.token") === "secret" && document.getElementById("token").value === ""`),
		chromedp.SetValue(chromedp.ID("purge-kind"), "key"),
		chromedp.SendKeys(chromedp.ID("purge-value"), hotPath),
		chromedp.Click(chromedp.ID("purge-go")),
		chromedp.Poll[chromedp.Void](`document.getElementById("purge-result").dataset.complete === "true"`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	res, err := chromedp.Run(bctx, chromedp.Attributes(chromedp.ID("purge-result")))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := strconv.ParseInt(res["data-rev"], 10, 64)
	if err != nil || rev <= 0 {
		t.Fatalf("purge result rev %q: %v", res["data-rev"], err)
	}
	text, _ := chromedp.Run(bctx, chromedp.TextContent(chromedp.ID("purge-result")))
	t.Logf("page says: %s", text)
	for i, nd := range tc.nodes {
		if got := nd.purgeRev.Load(); got < rev {
			t.Errorf("n%d applied purge revision %d, want >= %d", i, got, rev)
		}
		if v := tc.version(i, hotPath); v == old {
			t.Errorf("n%d still serves version %d after the purge", i, v)
		}
	}
	// What the page shows from the API is text, never markup: a tag that
	// looks like HTML is echoed as typed and creates no element.
	const markup = `<img/id=pwn/src=x/onerror=window.pwned=1>`
	run("purge a tag that looks like HTML",
		chromedp.SetValue(chromedp.ID("purge-kind"), "tag"),
		clearInput("purge-value"),
		chromedp.SendKeys(chromedp.ID("purge-value"), markup),
		chromedp.Click(chromedp.ID("purge-go")),
		chromedp.PollFunction[chromedp.Void](`(markup) => {
			const r = document.getElementById("purge-result");
			return r.dataset.complete === "true" && r.textContent.includes("tag " + markup + " committed");
		}`, chromedp.WithPollingArgs(markup), chromedp.WithPollingTimeout(10*time.Second)),
	)
	if injected, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("pwn") !== null || window.pwned === 1`)); err != nil || injected {
		t.Errorf("markup from the API became an element (%v, %v)", injected, err)
	}
	// Put the key purge back on screen for the screenshot.
	run("restore the form",
		chromedp.SetValue(chromedp.ID("purge-kind"), "key"),
		clearInput("purge-value"),
		chromedp.SendKeys(chromedp.ID("purge-value"), hotPath),
		chromedp.Click(chromedp.ID("purge-go")),
		chromedp.Poll[chromedp.Void](`document.getElementById("purge-result").dataset.complete === "true"`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)

	// The members table shows the last revision on every member once the
	// page polls again.
	res, err = chromedp.Run(bctx, chromedp.Attributes(chromedp.ID("purge-result")))
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.ParseInt(res["data-rev"], 10, 64)
	run("members show the purge revision",
		chromedp.PollFunction[chromedp.Void](`(rev) => [...document.querySelectorAll("#members tbody tr")].every(tr => Number(tr.children[5].textContent) >= rev)`,
			chromedp.WithPollingArgs(last), chromedp.WithPollingTimeout(10*time.Second)),
	)

	// Tenants: the table shows the tenant's node set (its min, one node);
	// a min set from the row reaches the API, and every router gives the
	// tenant that many nodes.
	const newsRow = `#tenants tbody tr[data-tenant="news"]`
	run("tenants table shows the node set",
		chromedp.Poll[chromedp.Void](`(() => {
			const tr = document.querySelector('`+newsRow+`');
			return tr !== null && tr.children[1].textContent === "1" && tr.children[5].dataset.nodes === "1";
		})()`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	run("set the tenant's limits from the page",
		chromedp.SendKeys(chromedp.CSS(newsRow+" input.min"), "2"),
		chromedp.SendKeys(chromedp.CSS(newsRow+" input.max"), "3"),
		chromedp.Click(chromedp.CSS(newsRow+" button")),
		chromedp.Poll[chromedp.Void](`document.getElementById("tenant-result").dataset.ok === "true"`, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Poll[chromedp.Void](`(() => {
			const tr = document.querySelector('`+newsRow+`');
			return tr.children[2].textContent === "2" && tr.children[3].textContent === "3" && tr.children[5].dataset.nodes === "2";
		})()`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if code, body := tc.call("GET", tc.admin(1, "/api/v1/tenants/news"), "", ""); code != 200 || !strings.Contains(body, `"min": 2`) || !strings.Contains(body, `"max": 3`) {
		t.Errorf("GET /api/v1/tenants/news after the page set min 2, max 3: %d %s", code, body)
	}
	eventually(t, 10*time.Second, func() string {
		for _, nd := range tc.nodes {
			if ids, _ := nd.router.TenantPeers("news"); len(ids) != 2 {
				return fmt.Sprintf("%s routes news to %v, want 2 nodes", nd.ID(), ids)
			}
		}
		return ""
	})

	// Pins and caps: a pin typed into the form reaches the API; the pinned
	// key is listed with its hot objects' row, whose controls set a cap.
	key := tc.key(hotPath)
	run("pin from the page",
		chromedp.SendKeys(chromedp.ID("limit-key"), hotPath),
		chromedp.SetValue(chromedp.ID("limit-kind"), "pin"),
		clearInput("limit-n"),
		chromedp.SendKeys(chromedp.ID("limit-n"), "1"),
		chromedp.SendKeys(chromedp.ID("limit-reason"), "from the page"),
		chromedp.SendKeys(chromedp.ID("limit-for"), "1h"),
		chromedp.Click(chromedp.ID("limit-go")),
		chromedp.PollFunction[chromedp.Void](`(key) => {
			const r = document.getElementById("limit-result");
			return r.dataset.ok === "true" && r.textContent.startsWith(key + ": pin 1, until ");
		}`, chromedp.WithPollingArgs(key), chromedp.WithPollingTimeout(10*time.Second)),
	)
	eventually(t, 10*time.Second, func() string {
		if got := tc.objects(2)[key]; got != "pin 1 cap -" {
			return fmt.Sprintf("n2 has %q for %s, want pin 1 from the page", got, key)
		}
		return ""
	})
	hotRow := fmt.Sprintf(`#hot tbody tr[data-key=%q]`, key)
	run("cap from the hot objects' row",
		chromedp.Poll[chromedp.Void](`document.querySelector('`+hotRow+`') !== null`, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(document.querySelector('`+hotRow+` input.n').value = "", true)`)(ctx, tg)
			return err
		}),
		chromedp.SendKeys(chromedp.CSS(hotRow+" input.n"), "2"),
		chromedp.Click(chromedp.CSS(hotRow+` button[data-act="cap"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('`+hotRow+`').children[7].textContent === "pin 1 · cap 2"`,
			chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.PollFunction[chromedp.Void](`(key) => {
			const tr = document.querySelector('#limits tbody tr[data-key="' + key + '"]');
			return tr !== null && tr.children[1].textContent === "1" && tr.children[2].textContent === "2" && tr.children[3].textContent === "from the page" &&
				tr.children[4].textContent.includes(" / until ");
		}`, chromedp.WithPollingArgs(key), chromedp.WithPollingTimeout(10*time.Second)),
	)
	if got := tc.objects(0)[key]; got != "pin 1 cap 2" {
		t.Errorf("n0 has %q for %s, want pin 1 cap 2 from the page", got, key)
	}
	// The leader acts on the pin: the key gets its leased replica.
	run("the pinned key shows its replica",
		chromedp.Poll[chromedp.Void](`document.querySelector('`+hotRow+` td:nth-child(6) span.replica') !== null`,
			chromedp.WithPollingTimeout(15*time.Second)),
	)

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("CROWDPILOT_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// Cleared from the pins and caps table: gone from the API.
	run("clear the pin and cap from the page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#limits tbody tr[data-key=%q] button`, key))),
		chromedp.PollFunction[chromedp.Void](`(key) => document.querySelector('#limits tbody tr[data-key="' + key + '"]') === null`,
			chromedp.WithPollingArgs(key), chromedp.WithPollingTimeout(10*time.Second)),
	)
	eventually(t, 10*time.Second, func() string {
		if got := tc.objects(1); len(got) != 0 {
			return fmt.Sprintf("settings after the clear from the page: %v, want none", got)
		}
		return ""
	})

	// Drain n2 from its row (the page asks to confirm: say yes), then undrain.
	routesToN2 := func() bool {
		for _, p := range tc.nodes[0].router.Peers() {
			if p.ID == "n2" {
				return true
			}
		}
		return false
	}
	run("drain n2 from the page",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)(ctx, tg)
			return err
		}),
		chromedp.Click(chromedp.CSS(`#members tbody tr[data-node="n2"] button`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#members tbody tr[data-node="n2"] td:nth-child(3)').textContent === "draining"`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	eventually(t, 10*time.Second, func() string {
		if routesToN2() {
			return "n0 still routes to the drained n2"
		}
		return ""
	})
	run("undrain n2 from the page",
		chromedp.Click(chromedp.CSS(`#members tbody tr[data-node="n2"] button`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#members tbody tr[data-node="n2"] td:nth-child(3)').textContent === "up"`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	eventually(t, 10*time.Second, func() string {
		if !routesToN2() {
			return "n0 does not route to n2 again"
		}
		return ""
	})

	cancelBrowser()
	listeners.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("page problem: %s", p)
	}
}

// clearInput empties a text input (SetValue refuses an empty value).
func clearInput(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(document.getElementById(%q).value = "", true)`, id))(ctx, t)
		return err
	})
}
