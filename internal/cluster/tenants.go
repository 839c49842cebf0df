package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TenantsPrefix is where tenant records live: TenantsPrefix(c) + name.
func TenantsPrefix(cluster string) string { return Prefix(cluster) + "tenants/" }

// TenantRecord is a tenant's state in etcd: the node set size the capacity
// manager (or an operator) chose, and the operator's overrides of the
// tenant's declaration. A nil override leaves the declared value.
type TenantRecord struct {
	Name string `json:"name"`
	// Size is the node set size; 0 means not set yet (the min applies).
	Size int `json:"size,omitempty"`
	// Hold keeps Size: the capacity manager neither grows nor shrinks it.
	Hold bool `json:"hold,omitempty"`
	// Min and Max override the declared bounds.
	Min *int `json:"min,omitempty"`
	Max *int `json:"max,omitempty"`
	// Labels, Pin and Exclude override the declared isolation.
	Labels  *map[string]string `json:"labels,omitempty"`
	Pin     *[]string          `json:"pin,omitempty"`
	Exclude *[]string          `json:"exclude,omitempty"`
	// Reason, By and Updated say who changed it last, when and why.
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// ErrTenantConflict is returned by TenantStore.Update when the record kept
// changing under it, or when a guard (such as a leader's fence) failed.
var ErrTenantConflict = errors.New("tenant record changed concurrently or guard failed")

// TenantStore reads and writes tenant records.
type TenantStore struct {
	client  *clientv3.Client
	prefix  string
	records *Records
}

// NewTenantStore returns the store of cluster's tenant records. records
// seals what it writes and opens what it reads: a record the cluster did
// not write is taken as none (and overwritten by the next update). Nil
// records means neither sealed nor checked.
func NewTenantStore(client *clientv3.Client, cluster string, records *Records) *TenantStore {
	return &TenantStore{client: client, prefix: TenantsPrefix(cluster), records: records}
}

func (s *TenantStore) key(name string) (string, error) {
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("tenant name %q: empty or containing /", name)
	}
	return s.prefix + name, nil
}

// Get returns name's record; ok is false when there is none.
func (s *TenantStore) Get(ctx context.Context, name string) (rec TenantRecord, ok bool, err error) {
	rec, ok, _, err = s.get(ctx, name)
	return rec, ok, err
}

func (s *TenantStore) get(ctx context.Context, name string) (TenantRecord, bool, int64, error) {
	key, err := s.key(name)
	if err != nil {
		return TenantRecord{}, false, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return TenantRecord{}, false, 0, fmt.Errorf("get tenant %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return TenantRecord{Name: name}, false, 0, nil
	}
	kv := resp.Kvs[0]
	raw, ok := s.records.Open(KindTenant, key, kv.Lease, kv.Value)
	if !ok {
		// Not written by the cluster: as if there were none.
		return TenantRecord{Name: name}, false, kv.ModRevision, nil
	}
	rec, ok := decodeTenant(key, raw)
	if !ok {
		return TenantRecord{}, false, 0, fmt.Errorf("tenant %q: undecodable record", name)
	}
	return rec, true, resp.Kvs[0].ModRevision, nil
}

// List returns every tenant record, by name (undecodable ones left out).
func (s *TenantStore) List(ctx context.Context) (map[string]TenantRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out := make(map[string]TenantRecord, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if rec, ok := s.decode(kv); ok {
			out[rec.Name] = rec
		}
	}
	return out, nil
}

// maxUpdateTries bounds Update's compare-and-swap retries.
const maxUpdateTries = 5

// Update reads name's record (a zero record with Name set if there is
// none), lets edit change it, and writes it back only if nobody wrote it in
// between and every guard holds (pass a leader's Fence.Cmp so a deposed
// leader cannot write). It retries a lost race a few times, then returns
// ErrTenantConflict; a failed guard returns ErrTenantConflict at once. An
// error from edit is returned as is and writes nothing.
func (s *TenantStore) Update(ctx context.Context, name string, edit func(rec *TenantRecord) error, guards ...Guard) (TenantRecord, error) {
	key, err := s.key(name)
	if err != nil {
		return TenantRecord{}, err
	}
	for range maxUpdateTries {
		rec, _, rev, err := s.get(ctx, name)
		if err != nil {
			return TenantRecord{}, err
		}
		if err := edit(&rec); err != nil {
			return TenantRecord{}, err
		}
		rec.Name = name
		val, err := json.Marshal(rec)
		if err != nil {
			return TenantRecord{}, fmt.Errorf("encode tenant %q: %w", name, err)
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}, guardCmps(guards)...)
		tctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := s.client.Txn(tctx).If(cmps...).Then(clientv3.OpPut(key, string(s.records.Seal(key, 0, val)))).Commit()
		cancel()
		if err != nil {
			return TenantRecord{}, fmt.Errorf("write tenant %q: %w", name, err)
		}
		if resp.Succeeded {
			return rec, nil
		}
		if len(guards) > 0 {
			// Tell a lost race from a failed guard: re-check the revision.
			_, _, now, err := s.get(ctx, name)
			if err != nil {
				return TenantRecord{}, err
			}
			if now == rev {
				return TenantRecord{}, fmt.Errorf("write tenant %q: %w", name, ErrTenantConflict)
			}
		}
	}
	return TenantRecord{}, fmt.Errorf("write tenant %q after %d tries: %w", name, maxUpdateTries, ErrTenantConflict)
}

// Delete removes name's record: the tenant goes back to its declaration.
func (s *TenantStore) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := s.client.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete tenant %q: %w", name, err)
	}
	return nil
}

// Watcher follows the records: onChange gets them by tenant name after
// the first load and after every change (see PrefixWatcher; the map is
// new on each call and may be kept).
func (s *TenantStore) Watcher(onChange func(map[string]TenantRecord), logger *slog.Logger) *PrefixWatcher[TenantRecord] {
	return &PrefixWatcher[TenantRecord]{
		Client: s.client,
		Prefix: s.prefix,
		Decode: s.decode,
		OnChange: func(view map[string]TenantRecord) {
			out := make(map[string]TenantRecord, len(view))
			for _, rec := range view {
				out[rec.Name] = rec
			}
			onChange(out)
		},
		Logger: logger,
	}
}

// decode opens and decodes a record.
func (s *TenantStore) decode(kv *mvccpb.KeyValue) (TenantRecord, bool) {
	raw, ok := s.records.Open(KindTenant, string(kv.Key), kv.Lease, kv.Value)
	if !ok {
		return TenantRecord{}, false // counted and logged by Open
	}
	return decodeTenant(string(kv.Key), raw)
}

// decodeTenant decodes a record whose name matches its key.
func decodeTenant(key string, raw []byte) (TenantRecord, bool) {
	var rec TenantRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return TenantRecord{}, false
	}
	if i := strings.LastIndexByte(key, '/'); i < 0 || key[i+1:] != rec.Name || rec.Size < 0 {
		return TenantRecord{}, false
	}
	return rec, true
}
