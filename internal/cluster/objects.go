package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ObjectsPrefix is where object settings live: ObjectsPrefix(c) + the key's
// hash in 16 hex digits.
func ObjectsPrefix(cluster string) string { return Prefix(cluster) + "objects/" }

// DefaultMaxObjects is the bound on object settings a cluster holds that
// nodes use: enough for every object an operator tends by hand, and small
// enough that every node watches them all.
const DefaultMaxObjects = 1000

// MaxObjectKeyBytes bounds the key of an object setting.
const MaxObjectKeyBytes = 4096

// ObjectSetting is an operator's setting for one object (a cache key): a
// pin and a cap on its leased replicas, which the autopilot leader reads.
type ObjectSetting struct {
	Key string `json:"key"` // the base cache key
	// Hash is the key's hash; the etcd key, which holds it, is
	// authoritative.
	Hash uint64 `json:"hash,string"`
	// Pin keeps at least Pin leased replicas of the key; 0 pins nothing.
	Pin int `json:"pin,omitempty"`
	// Cap, if not nil, allows at most *Cap leased replicas; 0 keeps the key
	// on its owner alone.
	Cap *int `json:"cap,omitempty"`
	// Until, if not zero, is when the setting lapses: it is stored under an
	// etcd lease that ends then, so etcd deletes it (and frees its place
	// in the bound) even if no node is up to notice.
	Until time.Time `json:"until,omitzero"`
	// Reason, By and Updated say why, who and when it was changed last.
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// IsZero reports whether s neither pins nor caps: such a setting is not
// stored.
func (s ObjectSetting) IsZero() bool { return s.Pin == 0 && s.Cap == nil }

// Errors of ObjectStore.Update.
var (
	// ErrObjectsFull: the setting would be a new one beyond the store's
	// bound. Clear another first.
	ErrObjectsFull = errors.New("object settings full")
	// ErrObjectConflict: the settings kept changing under the update.
	ErrObjectConflict = errors.New("object settings changed concurrently")
)

// ObjectStore reads and writes object settings, at most a bound of them.
type ObjectStore struct {
	client  *clientv3.Client
	prefix  string
	hash    func(key string) uint64
	max     int
	records *Records
}

// NewObjectStore returns the store of cluster's object settings. hash is
// the cache key hash the etcd keys are named by (httpcache.KeyHash); max
// bounds the settings Update creates (0 allows none). records seals what
// the store writes and opens what it reads: a setting the cluster did not
// write is taken as none (and overwritten by the next update). Nil records
// means neither sealed nor checked.
func NewObjectStore(client *clientv3.Client, cluster string, hash func(key string) uint64, max int, records *Records) (*ObjectStore, error) {
	switch {
	case client == nil:
		return nil, errors.New("object store: client is required")
	case hash == nil:
		return nil, errors.New("object store: hash is required")
	case max < 0:
		return nil, fmt.Errorf("object store: max %d must be >= 0", max)
	}
	if err := ValidName("Cluster", cluster); err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	return &ObjectStore{client: client, prefix: ObjectsPrefix(cluster), hash: hash, max: max, records: records}, nil
}

// Max is the bound on settings.
func (s *ObjectStore) Max() int { return s.max }

func (s *ObjectStore) etcdKey(key string) (string, uint64, error) {
	if key == "" || len(key) > MaxObjectKeyBytes {
		return "", 0, fmt.Errorf("object key of %d bytes: want 1 to %d", len(key), MaxObjectKeyBytes)
	}
	h := s.hash(key)
	return fmt.Sprintf("%s%016x", s.prefix, h), h, nil
}

// Get returns key's setting; ok is false when there is none.
func (s *ObjectStore) Get(ctx context.Context, key string) (set ObjectSetting, ok bool, err error) {
	set, ok, _, err = s.get(ctx, key)
	return set, ok, err
}

func (s *ObjectStore) get(ctx context.Context, key string) (ObjectSetting, bool, int64, error) {
	ek, h, err := s.etcdKey(key)
	if err != nil {
		return ObjectSetting{}, false, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, ek)
	if err != nil {
		return ObjectSetting{}, false, 0, fmt.Errorf("get object setting %q: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ObjectSetting{Key: key, Hash: h}, false, 0, nil
	}
	set, ok := s.decode(resp.Kvs[0])
	if !ok || set.Key != key {
		// Undecodable, or another key with the same hash: taken as none,
		// and overwritten by an update.
		return ObjectSetting{Key: key, Hash: h}, false, resp.Kvs[0].ModRevision, nil
	}
	return set, true, resp.Kvs[0].ModRevision, nil
}

// List returns every setting, by key (undecodable ones left out).
func (s *ObjectStore) List(ctx context.Context) ([]ObjectSetting, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list object settings: %w", err)
	}
	out := make([]ObjectSetting, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if set, ok := s.decode(kv); ok {
			out = append(out, set)
		}
	}
	slices.SortFunc(out, func(a, b ObjectSetting) int { return cmp.Compare(a.Key, b.Key) })
	return out, nil
}

// Update reads key's setting (a zero one with Key and Hash set if there is
// none), lets edit change it, and writes it back only if nobody wrote it in
// between. A setting edited to zero (no pin, no cap) is deleted. A new
// setting beyond the bound returns ErrObjectsFull and writes nothing; the
// bound holds under concurrent creates, since a create commits only if no
// setting was created since it counted. A lost race is retried a few times,
// then ErrObjectConflict. An error from edit is returned as is and writes
// nothing.
func (s *ObjectStore) Update(ctx context.Context, key string, edit func(set *ObjectSetting) error) (ObjectSetting, error) {
	ek, h, err := s.etcdKey(key)
	if err != nil {
		return ObjectSetting{}, err
	}
	for range maxUpdateTries {
		set, _, rev, err := s.get(ctx, key)
		if err != nil {
			return ObjectSetting{}, err
		}
		if err := edit(&set); err != nil {
			return ObjectSetting{}, err
		}
		set.Key, set.Hash = key, h
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(ek), "=", rev)}
		var op clientv3.Op
		switch {
		case set.IsZero() && rev == 0:
			return set, nil // nothing stored, nothing to store
		case set.IsZero():
			op = clientv3.OpDelete(ek)
		default:
			val, err := json.Marshal(set)
			if err != nil {
				return ObjectSetting{}, fmt.Errorf("encode object setting %q: %w", key, err)
			}
			lease, err := s.leaseUntil(ctx, set.Until)
			if err != nil {
				return ObjectSetting{}, fmt.Errorf("object setting %q: %w", key, err)
			}
			if lease != 0 {
				op = clientv3.OpPut(ek, string(s.records.Seal(ek, int64(lease), val)), clientv3.WithLease(lease))
			} else {
				op = clientv3.OpPut(ek, string(s.records.Seal(ek, 0, val)))
			}
			if rev == 0 {
				n, at, err := s.count(ctx)
				if err != nil {
					return ObjectSetting{}, err
				}
				if n >= int64(s.max) {
					return ObjectSetting{}, fmt.Errorf("object setting %q: %d of %d held: %w", key, n, s.max, ErrObjectsFull)
				}
				// No setting created since the count.
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.prefix), "<", at+1).WithPrefix())
			}
		}
		tctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := s.client.Txn(tctx).If(cmps...).Then(op).Commit()
		cancel()
		if err != nil {
			return ObjectSetting{}, fmt.Errorf("write object setting %q: %w", key, err)
		}
		if resp.Succeeded {
			return set, nil
		}
	}
	return ObjectSetting{}, fmt.Errorf("write object setting %q after %d tries: %w", key, maxUpdateTries, ErrObjectConflict)
}

// MaxObjectFor bounds how far ahead a setting's Until may be.
const MaxObjectFor = 366 * 24 * time.Hour

// ErrObjectUntil: a setting's Until is not in (now, now+MaxObjectFor].
var ErrObjectUntil = errors.New("object setting's end is not ahead")

// leaseUntil grants a lease ending at until (rounded up to the second), or
// none for the zero time. A lease left without a key when the write that
// asked for it fails ends by itself.
func (s *ObjectStore) leaseUntil(ctx context.Context, until time.Time) (clientv3.LeaseID, error) {
	if until.IsZero() {
		return 0, nil
	}
	left := time.Until(until)
	if left <= 0 || left > MaxObjectFor {
		return 0, fmt.Errorf("until %s: %w", until.Format(time.RFC3339), ErrObjectUntil)
	}
	ttl := int64((left + time.Second - 1) / time.Second)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Grant(ctx, ttl)
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	return resp.ID, nil
}

// count returns the settings stored and the revision it was read at.
func (s *ObjectStore) count(ctx context.Context) (int64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, 0, fmt.Errorf("count object settings: %w", err)
	}
	return resp.Count, resp.Header.Revision, nil
}

// Delete removes key's setting, reporting whether there was one.
func (s *ObjectStore) Delete(ctx context.Context, key string) (bool, error) {
	ek, _, err := s.etcdKey(key)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Delete(ctx, ek)
	if err != nil {
		return false, fmt.Errorf("delete object setting %q: %w", key, err)
	}
	return resp.Deleted > 0, nil
}

// Watcher follows the settings: onChange gets them by hash after the first
// load and after every change (see PrefixWatcher; the map is new on each
// call and may be kept).
func (s *ObjectStore) Watcher(onChange func(map[uint64]ObjectSetting), logger *slog.Logger) *PrefixWatcher[ObjectSetting] {
	return &PrefixWatcher[ObjectSetting]{
		Client: s.client,
		Prefix: s.prefix,
		Decode: s.decode,
		OnChange: func(view map[string]ObjectSetting) {
			out := make(map[uint64]ObjectSetting, len(view))
			for _, set := range view {
				out[set.Hash] = set
			}
			onChange(out)
		},
		Logger: logger,
	}
}

// decode opens and reads a setting whose key hashes to its etcd key, with a
// pin and cap in range.
func (s *ObjectStore) decode(kv *mvccpb.KeyValue) (ObjectSetting, bool) {
	hexHash, ok := strings.CutPrefix(string(kv.Key), s.prefix)
	if !ok || len(hexHash) != 16 {
		return ObjectSetting{}, false
	}
	h, err := strconv.ParseUint(hexHash, 16, 64)
	if err != nil {
		return ObjectSetting{}, false
	}
	raw, ok := s.records.Open(KindObject, string(kv.Key), kv.Lease, kv.Value)
	if !ok {
		return ObjectSetting{}, false // counted and logged by Open
	}
	var set ObjectSetting
	if err := json.Unmarshal(raw, &set); err != nil {
		return ObjectSetting{}, false
	}
	if set.Key == "" || s.hash(set.Key) != h || set.Pin < 0 || (set.Cap != nil && *set.Cap < 0) || set.IsZero() {
		return ObjectSetting{}, false
	}
	set.Hash = h
	return set, true
}
