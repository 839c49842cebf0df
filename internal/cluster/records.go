package cluster

// Authenticated records: what the cluster writes to etcd carries a MAC
// under a key derived from the cluster secret, so a record that anyone
// else with write access to etcd put there is ignored.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Record kinds, the label values of crowdpilot_cluster_records_rejected_total.
const (
	KindMember  = "member"
	KindReplica = "replica"
	KindLeader  = "leader" // election candidates
	KindPurge   = "purge"  // purge log entries
	KindTenant  = "tenant"
	KindObject  = "object" // per-object settings (pins, caps)
)

// recordLabel separates the record key from every other key derived from
// the cluster secret (the hop proof, the peer proof).
const recordLabel = "crowdpilot etcd record v1"

// maxWarnedKeys bounds the keys whose rejection has been logged; past it a
// rejection is counted and logged at debug only.
const maxWarnedKeys = 1024

// Records seals and opens the records the cluster writes to etcd. A sealed
// value is JSON, {"mac": "...", "record": <the record>}, where the MAC is
// HMAC-SHA256, under a key derived from the cluster secret, over the etcd
// key, the lease the record is written under, and the record's bytes: a
// record moved to another key, or put under another lease (so that it
// outlives its writer), no longer opens.
//
// Without a secret nothing is authenticated: Seal writes the record as it
// is and Open accepts any record. A nil *Records behaves the same.
type Records struct {
	key      []byte // nil: no secret
	rejected *prometheus.CounterVec
	log      *slog.Logger

	mu     sync.Mutex          // guards warned
	warned map[string]struct{} // etcd keys whose rejection was logged
}

// sealed is a record as stored.
type sealed struct {
	MAC    string          `json:"mac"`
	Record json.RawMessage `json:"record"`
}

// NewRecords returns Records keyed by secret (the admin token every node
// of the cluster shares), registering its counter on reg (nil: none).
// logger (nil: discard) receives one warning per rejected key.
func NewRecords(secret string, reg prometheus.Registerer, logger *slog.Logger) (*Records, error) {
	r := &Records{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crowdpilot_cluster_records_rejected_total",
			Help: "Records read from etcd without a valid MAC under the cluster secret (written by someone else, or by a node with another secret): ignored.",
		}, []string{"kind"}),
		log:    orDiscard(logger),
		warned: make(map[string]struct{}),
	}
	for _, k := range []string{KindMember, KindReplica, KindLeader, KindPurge, KindTenant, KindObject} {
		r.rejected.WithLabelValues(k)
	}
	if reg != nil {
		if err := reg.Register(r.rejected); err != nil {
			return nil, err
		}
	}
	if secret != "" {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(recordLabel))
		r.key = m.Sum(nil)
	}
	return r, nil
}

// Authenticated reports whether records are sealed and checked.
func (r *Records) Authenticated() bool { return r != nil && r.key != nil }

// mac is the MAC of record stored at key under lease.
func (r *Records) mac(key string, lease int64, record []byte) []byte {
	m := hmac.New(sha256.New, r.key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(key)))
	m.Write(n[:])
	m.Write([]byte(key))
	binary.BigEndian.PutUint64(n[:], uint64(lease))
	m.Write(n[:])
	m.Write(record)
	return m.Sum(nil)
}

// Seal returns the value to store for record (compact JSON) at key under
// lease (0: none).
func (r *Records) Seal(key string, lease int64, record []byte) []byte {
	if !r.Authenticated() {
		return record
	}
	b, _ := json.Marshal(sealed{
		MAC:    base64.RawURLEncoding.EncodeToString(r.mac(key, lease, record)),
		Record: record,
	})
	return b
}

// Open returns the record in value, read from etcd at key under lease, if
// its MAC is valid. A record that does not open is counted under kind and
// logged at warn, once per key.
func (r *Records) Open(kind, key string, lease int64, value []byte) ([]byte, bool) {
	var s sealed
	isSealed := json.Unmarshal(value, &s) == nil && s.MAC != "" && len(s.Record) > 0
	if !r.Authenticated() {
		if isSealed {
			return s.Record, true
		}
		return value, true
	}
	if isSealed {
		if got, err := base64.RawURLEncoding.DecodeString(s.MAC); err == nil && hmac.Equal(got, r.mac(key, lease, s.Record)) {
			return s.Record, true
		}
	}
	r.reject(kind, key, isSealed)
	return nil, false
}

// reject counts a record that did not open and logs it once per key.
func (r *Records) reject(kind, key string, sealed bool) {
	r.rejected.WithLabelValues(kind).Inc()
	why := "no MAC"
	if sealed {
		why = "MAC does not match"
	}
	r.mu.Lock()
	_, seen := r.warned[key]
	first := !seen && len(r.warned) < maxWarnedKeys
	if first {
		r.warned[key] = struct{}{}
	}
	r.mu.Unlock()
	if first {
		r.log.Warn("ignoring a record in etcd the cluster did not write (not authenticated under the cluster secret; logged once per key)", "kind", kind, "key", key, "why", why)
		return
	}
	r.log.Debug("ignoring unauthenticated record", "kind", kind, "key", key, "why", why)
}
