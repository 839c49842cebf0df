package purgeclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/purgeclient"
)

const (
	testCluster = "pc"
	token       = "s3cret"
)

type applier struct {
	mu   sync.Mutex // guards revs
	revs []int64
}

func (a *applier) ApplyPurge(e purge.Entry) {
	a.mu.Lock()
	a.revs = append(a.revs, e.Rev)
	a.mu.Unlock()
}
func (a *applier) Flush() {}

// server runs the real purge handler behind a bearer-token check, over an
// embedded etcd with one following node "n1".
func server(t *testing.T) (*httptest.Server, *clientv3.Client, *applier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: t.TempDir(), CompactionRetention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{e.ClientURL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	a := &applier{}
	f, err := purge.NewFollower(purge.FollowerConfig{Client: c, Cluster: testCluster, Applier: a,
		OnApplied: func(rev int64) { putMember(t, c, "n1", rev) }})
	if err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	t.Cleanup(func() { stop(); <-done })

	members := func() []cluster.Member {
		resp, err := c.Get(context.Background(), cluster.MembersPrefix(testCluster), clientv3.WithPrefix())
		if err != nil {
			t.Errorf("members: %v", err)
			return nil
		}
		var ms []cluster.Member
		for _, kv := range resp.Kvs {
			var m cluster.Member
			_ = json.Unmarshal(kv.Value, &m)
			ms = append(ms, m)
		}
		return ms
	}
	h := purge.NewHandler(purge.NewLog(c, testCluster, nil), members, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != purgeclient.Path {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized) // plain text, as a middleware might
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	deadline := time.Now().Add(30 * time.Second)
	for len(members()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("node n1 never published its position")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	return srv, c, a
}

func putMember(t *testing.T, c *clientv3.Client, id string, rev int64) {
	b, _ := json.Marshal(cluster.Member{ID: id, Addr: id + ":80", PurgeRev: rev})
	if _, err := c.Put(context.Background(), cluster.MembersPrefix(testCluster)+id, string(b)); err != nil {
		t.Errorf("put member %s: %v", id, err)
	}
}

func TestClientAgainstHandler(t *testing.T) {
	srv, c, a := server(t)
	pc := &purgeclient.Client{BaseURL: srv.URL + "/", Token: token, HTTPClient: srv.Client()}
	ctx := context.Background()

	res, err := pc.PurgeTag(ctx, "match-1234", purgeclient.Wait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Kind != "tag" || res.Value != "match-1234" || res.Rev <= 0 ||
		!slices.Equal(res.Applied, []string{"n1"}) || len(res.Pending) != 0 {
		t.Fatalf("PurgeTag = %+v, want complete on n1", res)
	}
	a.mu.Lock()
	applied := slices.Contains(a.revs, res.Rev)
	a.mu.Unlock()
	if !applied {
		t.Fatalf("confirmed rev %d was not applied by the node", res.Rev)
	}

	for name, call := range map[string]func() (purgeclient.Result, error){
		"key": func() (purgeclient.Result, error) {
			return pc.PurgeKey(ctx, "http://example.com/a", purgeclient.Soft())
		},
		"prefix": func() (purgeclient.Result, error) { return pc.PurgePrefix(ctx, "/news/") },
		"all":    func() (purgeclient.Result, error) { return pc.PurgeAll(ctx, purgeclient.Wait(10*time.Second)) },
	} {
		res, err := call()
		if err != nil || res.Kind != name || res.Rev <= 0 {
			t.Errorf("%s: %+v %v", name, res, err)
		}
		if name == "key" && !res.Soft {
			t.Errorf("key: Soft lost: %+v", res)
		}
	}

	// A node that never applies: committed, not complete, named.
	putMember(t, c, "n2-dead", 1)
	res, err = pc.Purge(ctx, purgeclient.Request{Key: "/x", Wait: 200 * time.Millisecond})
	if err != nil || res.Complete || !slices.Equal(res.Pending, []string{"n2-dead"}) {
		t.Errorf("with a dead node: %+v %v, want incomplete, pending [n2-dead]", res, err)
	}
}

func TestClientErrors(t *testing.T) {
	srv, c, _ := server(t)
	ctx := context.Background()
	pc := &purgeclient.Client{BaseURL: srv.URL, Token: token}
	before, err := c.Get(ctx, purge.LogPrefix(testCluster), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}

	for _, r := range []purgeclient.Request{{}, {Key: "a", Tag: "b"}, {All: true, Wait: -time.Second}} {
		if _, err := pc.Purge(ctx, r); !errors.Is(err, purgeclient.ErrInvalidRequest) {
			t.Errorf("%+v: err %v, want ErrInvalidRequest", r, err)
		}
	}
	for _, tc := range []struct {
		name   string
		pc     *purgeclient.Client
		r      purgeclient.Request
		status int
		msg    string
	}{
		{"no token", &purgeclient.Client{BaseURL: srv.URL}, purgeclient.Request{Tag: "a"}, 401, "unauthorized"},
		{"bad tag", pc, purgeclient.Request{Tag: "a b"}, 400, "space or comma"},
		{"long wait", pc, purgeclient.Request{Tag: "a", Wait: time.Minute}, 400, "30s maximum"},
		{"wrong path", &purgeclient.Client{BaseURL: srv.URL + "/nope", Token: token}, purgeclient.Request{Tag: "a"}, 404, "not found"},
	} {
		_, err := tc.pc.Purge(ctx, tc.r)
		var perr *purgeclient.Error
		if !errors.As(err, &perr) || perr.StatusCode != tc.status || !strings.Contains(perr.Message, tc.msg) {
			t.Errorf("%s: err %v, want *Error %d containing %q", tc.name, err, tc.status, tc.msg)
		}
	}
	after, err := c.Get(ctx, purge.LogPrefix(testCluster), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Count != before.Count {
		t.Errorf("refused purges changed the log: %d -> %d entries", before.Count, after.Count)
	}

	if _, err := (&purgeclient.Client{}).PurgeAll(ctx); err == nil {
		t.Error("empty BaseURL: no error")
	}
	srv.Close()
	if _, err := pc.PurgeAll(ctx); err == nil {
		t.Error("server down: no error")
	}
}

// The client duplicates the server's answer type; keep them in step (the
// request side is checked by the handler's strict decoding in the tests above).
func TestResultMatchesServerResponse(t *testing.T) {
	sr, cr := reflect.TypeFor[purge.Response](), reflect.TypeFor[purgeclient.Result]()
	if sr.NumField() != cr.NumField() {
		t.Fatalf("purge.Response has %d fields, purgeclient.Result %d", sr.NumField(), cr.NumField())
	}
	for i := range sr.NumField() {
		s, c := sr.Field(i), cr.Field(i)
		if s.Name != c.Name || s.Tag.Get("json") != c.Tag.Get("json") {
			t.Errorf("field %d: server %s %q, client %s %q", i, s.Name, s.Tag, c.Name, c.Tag)
		}
	}
}
