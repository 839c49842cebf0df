package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names scraped from the admins.
const (
	metricOriginFetches = "crowdpilot_origin_fetches_total"
	metricReplicas      = "crowdpilot_autopilot_replicas_active"
)

// maxScrape bounds the bytes read from one /metrics answer.
const maxScrape = 8 << 20

// scrape is what one admin's /metrics said.
type scrape struct {
	fetches     float64
	hasFetches  bool
	replicas    float64
	hasReplicas bool
}

// adminPoller scrapes the admins' /metrics. An admin that fails is skipped
// for that scrape. Not safe for concurrent use: the generator polls from one
// goroutine.
type adminPoller struct {
	client *http.Client
	urls   []string
	hot    []string
	prev   []scrape // last answer per admin, for counter deltas
	prevOK []bool
}

func newAdminPoller(client *http.Client, admins, hot []string) *adminPoller {
	urls := make([]string, len(admins))
	for i, a := range admins {
		urls[i] = metricsURL(a)
	}
	return &adminPoller{client: client, urls: urls, hot: hot, prev: make([]scrape, len(admins)), prevOK: make([]bool, len(admins))}
}

// metricsURL turns "host:port" (or a URL) into its /metrics URL.
func metricsURL(admin string) string {
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	u := strings.TrimRight(admin, "/")
	if !strings.HasSuffix(u, "/metrics") {
		u += "/metrics"
	}
	return u
}

// poll scrapes every admin at once and returns the origin fetches since the
// previous poll and the replicas now; nil means no admin had the figure.
func (p *adminPoller) poll(ctx context.Context) (fetches, replicas *float64) {
	now := make([]scrape, len(p.urls))
	ok := make([]bool, len(p.urls))
	var wg sync.WaitGroup
	for i, u := range p.urls {
		wg.Go(func() {
			s, err := p.scrape(ctx, u)
			now[i], ok[i] = s, err == nil
		})
	}
	wg.Wait()
	var df, rep float64
	var hasF, hasR bool
	for i := range now {
		if !ok[i] {
			p.prevOK[i] = false
			continue
		}
		if s := now[i]; s.hasReplicas {
			rep += s.replicas
			hasR = true
		}
		if s, was := now[i], p.prev[i]; s.hasFetches && p.prevOK[i] && was.hasFetches {
			d := s.fetches - was.fetches
			if d < 0 { // the node restarted: its counter began again at 0
				d = s.fetches
			}
			df += d
			hasF = true
		}
		p.prev[i], p.prevOK[i] = now[i], true
	}
	if hasF {
		fetches = &df
	}
	if hasR {
		replicas = &rep
	}
	return fetches, replicas
}

func (p *adminPoller) scrape(ctx context.Context, url string) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return scrape{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := p.client.Do(req)
	if err != nil {
		return scrape{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return scrape{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, maxScrape), p.hot)
}

// parseMetrics sums the origin fetch counter over all its series, and the
// replica gauge over the series that name a hot object (all of them when hot
// is empty; a series without labels always counts).
func parseMetrics(r io.Reader, hot []string) (scrape, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return scrape{}, fmt.Errorf("parse metrics: %w", err)
	}
	var s scrape
	if f := fams[metricOriginFetches]; f != nil {
		s.hasFetches = true
		for _, m := range f.GetMetric() {
			s.fetches += value(m)
		}
	}
	if f := fams[metricReplicas]; f != nil {
		s.hasReplicas = true
		for _, m := range f.GetMetric() {
			if namesHot(m, hot) {
				s.replicas += value(m)
			}
		}
	}
	return s, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// namesHot reports whether a label of m is a hot path, or a key ending in
// one.
func namesHot(m *dto.Metric, hot []string) bool {
	if len(hot) == 0 || len(m.GetLabel()) == 0 {
		return true
	}
	for _, l := range m.GetLabel() {
		for _, h := range hot {
			if v := l.GetValue(); v == h || strings.HasSuffix(v, h) {
				return true
			}
		}
	}
	return false
}
