package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// syncBuffer is a log sink tests read while the code under test writes.
type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func newTestRecords(t *testing.T, secret string, logs *syncBuffer) (*Records, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r, err := NewRecords(secret, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return r, reg
}

// TestRecordsSealOpen: a sealed record opens at its key under its lease
// with the same secret, and under no other key, lease, secret or content;
// an unsealed one does not open; each refusal is counted and the first per
// key logged.
func TestRecordsSealOpen(t *testing.T) {
	logs := newSyncBuffer()
	r, _ := newTestRecords(t, "secret", logs)
	rec := []byte(`{"id":"n1","addr":"127.0.0.1:8080"}`)
	const key, lease = "/crowdpilot/c/members/n1", int64(0x1234)
	v := r.Seal(key, lease, rec)
	if got, ok := r.Open(KindMember, key, lease, v); !ok || !bytes.Equal(got, rec) {
		t.Fatalf("Open(Seal) = %q, %v", got, ok)
	}
	other, _ := newTestRecords(t, "other secret", nil)
	tampered := bytes.Replace(v, []byte("8080"), []byte("6666"), 1)
	for _, tt := range []struct {
		name  string
		r     *Records
		key   string
		lease int64
		value []byte
	}{
		{"another key", r, "/crowdpilot/c/members/n2", lease, v},
		{"another lease", r, key, lease + 1, v},
		{"no lease", r, key, 0, v},
		{"another secret", other, key, lease, v},
		{"tampered", r, key, lease, tampered},
		{"unsealed", r, key, lease, rec},
		{"not JSON", r, key, lease, []byte("garbage")},
		{"empty MAC", r, key, lease, []byte(`{"mac":"","record":{}}`)},
	} {
		if got, ok := tt.r.Open(KindMember, tt.key, tt.lease, tt.value); ok {
			t.Errorf("%s: opened as %q", tt.name, got)
		}
	}
	// 7 refusals by r (one by other), logged once per key: n1 and n2.
	if got := counterValue(r.rejected.WithLabelValues(KindMember)); got != 7 {
		t.Errorf("rejected{member} = %v, want 7", got)
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != 2 {
		t.Errorf("%d warnings, want 2 (one per key):\n%s", got, logs)
	}
}

// TestRecordsWithoutSecret: with no secret nothing is sealed and anything
// opens, sealed or not (a nil *Records too).
func TestRecordsWithoutSecret(t *testing.T) {
	none, _ := newTestRecords(t, "", nil)
	sealer, _ := newTestRecords(t, "secret", nil)
	rec := []byte(`{"id":"n1"}`)
	for _, r := range []*Records{none, nil} {
		if r.Authenticated() {
			t.Error("Authenticated without a secret")
		}
		if got := r.Seal("k", 1, rec); !bytes.Equal(got, rec) {
			t.Errorf("Seal without a secret = %q", got)
		}
		for _, v := range [][]byte{rec, sealer.Seal("k", 1, rec)} {
			if got, ok := r.Open(KindMember, "k", 1, v); !ok || !bytes.Equal(got, rec) {
				t.Errorf("Open(%q) = %q, %v", v, got, ok)
			}
		}
	}
}

// TestMembershipIgnoresForgedRecords: a member record written straight
// into etcd by someone without the secret is left out of every node's
// membership and counted; sealed members still join, and a forged record
// over a genuine member's key hides it only until it writes again.
func TestMembershipIgnoresForgedRecords(t *testing.T) {
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	recs, _ := newTestRecords(t, "secret", nil)
	newMember := func(id string) *Membership {
		m, err := NewMembership(MembershipConfig{
			Client: c, Cluster: "test", TTL: testTTL, Logger: testLogger(t), Records: recs,
			Self: Member{ID: id, Addr: "127.0.0.1:80" + id[1:]},
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1 := newMember("n1")
	testwait.Go(t, m1.Run)
	testwait.Eventually(t, 10*time.Second, "n1 sees itself", sees(m1, "n1"))

	forged, _ := json.Marshal(Member{ID: "evil", Addr: "203.0.113.7:80", Admin: "203.0.113.7:90"})
	lease, err := c.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(t.Context(), MembersPrefix("test")+"evil", string(forged), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	// A genuine record copied to another key does not open there either.
	got, err := c.Get(t.Context(), MembersPrefix("test")+"n1")
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("get n1: %v", err)
	}
	if _, err := c.Put(t.Context(), MembersPrefix("test")+"copy", string(got.Kvs[0].Value), clientv3.WithLease(clientv3.LeaseID(got.Kvs[0].Lease))); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "both forgeries counted", func() bool {
		return counterValue(recs.rejected.WithLabelValues(KindMember)) >= 2
	})
	m2 := newMember("n2")
	testwait.Go(t, m2.Run)
	testwait.Eventually(t, 10*time.Second, "n2 joins", sees(m1, "n1,n2"))
	testwait.Eventually(t, 10*time.Second, "n2 sees n1 and itself", sees(m2, "n1,n2"))

	// Overwriting n2's own record hides n2 until its next write.
	if _, err := c.Put(t.Context(), MembersPrefix("test")+"n2", string(forged)); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "forged n2 ignored", sees(m1, "n1"))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := m2.Update(ctx, func(m *Member) { m.Zone = "z2" }); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "n2 back", sees(m1, "n1,n2"))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
