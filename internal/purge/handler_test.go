package purge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// post sends body to h and decodes the JSON answer into a map.
func post(t *testing.T, h http.Handler, ctx context.Context, method, contentType, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequestWithContext(ctx, method, "/api/v1/purge", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %q: answer %d is not JSON: %q", method, body, rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return rec.Code, out
}

func currentRev(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	resp, err := c.Get(context.Background(), "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestHandlerRefusesBadInputAndChangesNothing(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	h := NewHandler(NewLog(c, testCluster, nil), func() []cluster.Member { return nil }, nil)
	before := currentRev(t, c)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, tc := range []struct {
		name, method, ctype, body string
		ctx                       context.Context
		status                    int
		errHas                    string
	}{
		{"get", http.MethodGet, "", "", nil, 405, "POST"},
		{"form body", "POST", "application/x-www-form-urlencoded", `tag=a`, nil, 400, "malformed JSON"},
		{"empty", "POST", "", "", nil, 400, "empty body"},
		{"malformed", "POST", "application/json", `{"tag":`, nil, 400, "malformed JSON"},
		{"not an object", "POST", "", `["tag"]`, nil, 400, "must be a JSON object, not array"},
		{"null", "POST", "", `null`, nil, 400, "exactly one"},
		{"no target", "POST", "", `{"soft":true}`, nil, 400, "exactly one"},
		{"empty key", "POST", "", `{"key":""}`, nil, 400, "exactly one"},
		{"two targets", "POST", "", `{"key":"/a","tag":"b"}`, nil, 400, `got "key" and "tag"`},
		{"tag and all", "POST", "", `{"tag":"b","all":true}`, nil, 400, `got "tag" and "all"`},
		{"unknown field", "POST", "", `{"tag":"a","ttl":"1s"}`, nil, 400, `unknown field "ttl"`},
		{"wrong type", "POST", "", `{"tag":7}`, nil, 400, `"tag" must be a JSON string, not number`},
		{"wrong type bool", "POST", "", `{"all":"yes"}`, nil, 400, `"all" must be a JSON boolean, not string`},
		{"two objects", "POST", "", `{"tag":"a"}{"tag":"b"}`, nil, 400, "malformed JSON"},
		{"wait number", "POST", "", `{"tag":"a","wait":2}`, nil, 400, `invalid wait 2`},
		{"wait words", "POST", "", `{"tag":"a","wait":"soon"}`, nil, 400, `invalid wait "soon"`},
		{"wait negative", "POST", "", `{"tag":"a","wait":"-1s"}`, nil, 400, "negative"},
		{"wait too long", "POST", "", `{"tag":"a","wait":"31s"}`, nil, 400, "30s maximum"},
		{"tag with space", "POST", "", `{"tag":"a b"}`, nil, 400, "space or comma"},
		{"long key", "POST", "", `{"key":"` + strings.Repeat("k", MaxValueBytes+1) + `"}`, nil, 400, "2049 bytes"},
		{"oversized", "POST", "", `{"tag":"` + strings.Repeat("t", MaxBodyBytes) + `"}`, nil, 413, "larger than"},
		{"oversized trailer", "POST", "", `{"tag":"a"}` + strings.Repeat(" ", MaxBodyBytes), nil, 413, "larger than"},
		{"etcd unreachable", "POST", "", `{"tag":"a"}`, canceled, 503, "not committed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			status, out := post(t, h, ctx, tc.method, tc.ctype, tc.body)
			msg, _ := out["error"].(string)
			if status != tc.status || !strings.Contains(msg, tc.errHas) {
				t.Errorf("got %d %q, want %d with an error containing %q", status, msg, tc.status, tc.errHas)
			}
		})
	}
	if after := currentRev(t, c); after != before {
		t.Errorf("etcd revision moved from %d to %d: bad input wrote something", before, after)
	}
	if n := logCount(t, c); n != 0 {
		t.Errorf("purge log holds %d entries after bad input only", n)
	}
}

func TestHandlerWaitsForEveryLiveNode(t *testing.T) {
	te := startEtcd(t)
	c := te.client()
	members := etcdMembers(t, c)
	h := NewHandler(NewLog(c, testCluster, nil), members, nil)

	var fs []*Follower
	var recs []*recorder
	for _, id := range []string{"n1", "n2"} {
		rec := &recorder{}
		f, _ := startFollower(t, FollowerConfig{Client: te.client(), Applier: rec, OnApplied: publishTo(t, c, id)})
		fs, recs = append(fs, f), append(recs, rec)
	}
	testwait.Eventually(t, testTimeout, "both members published", func() bool { return len(members()) == 2 })

	for i := range 5 {
		status, out := post(t, h, context.Background(), "POST", "application/json", `{"tag":"match-1234","wait":"10s"}`)
		if status != http.StatusOK || out["complete"] != true || out["kind"] != "tag" || out["value"] != "match-1234" {
			t.Fatalf("purge %d: %d %v, want 200 complete", i, status, out)
		}
		rev := int64(out["rev"].(float64))
		if got := toStrings(out["applied"]); !slices.Equal(got, []string{"n1", "n2"}) || len(toStrings(out["pending"])) != 0 {
			t.Fatalf("purge %d: applied %v pending %v", i, got, out["pending"])
		}
		// "applied" means applied: each follower has seen this very entry.
		for j, rec := range recs {
			if !rec.has(rev) {
				t.Fatalf("purge %d confirmed but follower %d has not applied rev %d", i, j, rev)
			}
		}
	}

	// No wait: answered at once, with a truthful snapshot.
	status, out := post(t, h, context.Background(), "POST", "", `{"prefix":"/news/"}`)
	if status != http.StatusOK || out["rev"].(float64) <= 0 {
		t.Fatalf("no wait: %d %v", status, out)
	}
	if len(toStrings(out["applied"]))+len(toStrings(out["pending"])) != 2 || out["complete"] != (len(toStrings(out["pending"])) == 0) {
		t.Fatalf("no wait: inconsistent answer %v", out)
	}

	// A node that never applies (dead, lease not yet expired): 202 naming it.
	publishTo(t, c, "n3-dead")(1)
	start := time.Now()
	status, out = post(t, h, context.Background(), "POST", "", `{"key":"http://example.com/x","soft":true,"wait":"300ms"}`)
	if status != http.StatusAccepted || out["complete"] != false || out["soft"] != true {
		t.Fatalf("with a dead node: %d %v, want 202 incomplete", status, out)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("answered after %s, before the 300ms wait", d)
	}
	if got := toStrings(out["pending"]); !slices.Equal(got, []string{"n3-dead"}) {
		t.Errorf("pending %v, want [n3-dead]", got)
	}
	if got := toStrings(out["applied"]); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Errorf("applied %v, want [n1 n2]", got)
	}
	_ = fs
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestWaitAppliedReturnsAtDeadline(t *testing.T) {
	members := []cluster.Member{{ID: "a", PurgeRev: 10}, {ID: "b", PurgeRev: 9}, {ID: "c", PurgeRev: 11, Draining: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	applied, pending := WaitApplied(ctx, 10, func() []cluster.Member { return members })
	if !slices.Equal(applied, []string{"a", "c"}) || !slices.Equal(pending, []string{"b"}) {
		t.Errorf("applied %v pending %v", applied, pending)
	}
	applied, pending = WaitApplied(context.Background(), 9, func() []cluster.Member { return members })
	if len(applied) != 3 || pending == nil || len(pending) != 0 {
		t.Errorf("applied %v pending %#v", applied, pending)
	}
}
