package node

// Replicas fill from the owner, never from the origin: the copy a leader
// asks for at scale-out, and every later miss or refresh on a replica.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/fill"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// copier fills a key on another node from its owner (scale-out).
type copier struct{ n *Node }

var _ autopilot.Copier = copier{}

func (c copier) Copy(ctx context.Context, node, key, from string) error {
	var addr string
	for _, m := range c.n.members.Members() {
		if m.ID == node {
			addr = c.n.callAddrOf(m)
		}
	}
	if addr == "" {
		return fmt.Errorf("copy %q to %s: node unknown", key, node)
	}
	req := map[string]string{"key": key}
	if from != "" {
		req["from"] = from
	}
	body, _ := json.Marshal(req)
	return c.n.adminCall(ctx, http.MethodPost, node, addr, pathReplicate, body, nil)
}

// handleReplicate copies one key into this node's store, before the leader
// registers this node as a replica: from the member the leader named (a
// replica less loaded than the owner), or else from the member this node's
// router would pick for the key — by power-of-two-choices on its own
// forwards in flight, so a registered replica rather than the owner the
// crowd is queued on — falling back to the owner, then the origin.
func (n *Node) handleReplicate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key  string `json:"key"`
		From string `json:"from"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil || req.Key == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want {\"key\": \"<cache key>\", \"from\": \"<member id, optional>\"}"})
		return
	}
	target, err := n.requestForKey(r.Context(), req.Key)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	hash := httpcache.KeyHash(req.Key)
	up := n.upstreamFor(hash)
	if req.From == "" {
		var buf [4]route.Target
		owner, _ := n.router.Owner(hash)
		if plan := n.router.Plan(hash, buf[:0]); !plan.Local && len(plan.Targets) > 0 && plan.Targets[0].ID() != owner.ID {
			up = n.peerUpstream(plan.Targets[0].Peer(), hash, up)
		}
	} else if req.From != n.cfg.ID {
		from, ok := n.member(req.From)
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("from: %q is not a member", req.From)})
			return
		}
		up = n.peerUpstream(from, hash, up)
	}
	stale, _ := n.store.Get(req.Key, target.Header)
	res, err := n.fill.Fetch(r.Context(), target, req.Key, stale, up)
	if err == nil && res.Stream != nil {
		res.Stream.Body.Close() // relayed, never stored: nothing to copy
		err = fill.ErrTooLarge
	}
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	if !res.Stored {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "object is not cacheable"})
		return
	}
	if !res.Entry.Near.IsZero() {
		// The copy held was a near copy: a replica keeps it past its lease.
		n.adoptNear(req.Key, target.Header, res.Entry)
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": req.Key, "bytes": len(res.Entry.Body)})
}

// requestForKey rebuilds a GET for a base cache key ("host/path?query").
func (n *Node) requestForKey(ctx context.Context, key string) (*http.Request, error) {
	host, err := n.siteOfKey(key)
	if err != nil {
		return nil, err
	}
	rest, ok := strings.CutPrefix(key, host)
	if !ok || !strings.HasPrefix(rest, "/") {
		return nil, fmt.Errorf("key %q is not a key of origin %s", key, host)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+rest, nil)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", key, err)
	}
	if base, err := n.baseKey(req); err != nil || base != key {
		return nil, fmt.Errorf("key %q is not canonical", key)
	}
	return req, nil
}

// upstreamFor is where this node fills hash from: the origin when it owns
// the key, otherwise the owner — a replica never asks the origin, so the
// origin still sees one fetch per object per TTL. If the owner cannot be
// reached the node fetches from the origin itself. The origin is nil (the
// fill's own way there) except for an object of the hot set, whose origin
// fetches are counted (hotobjects.go).
func (n *Node) upstreamFor(hash uint64) fill.Upstream { return n.upstreamIn("", hash) }

// upstreamIn is upstreamFor for a key of tenant, owned within the tenant's
// node set ("": every node).
func (n *Node) upstreamIn(tenant string, hash uint64) fill.Upstream {
	owner, ok := n.ownerElsewhere(tenant, hash)
	if !ok {
		return n.ap.hot.upstream(hash)
	}
	return n.peerUpstream(owner, hash, nil)
}

// ownerElsewhere returns the owner of hash within tenant's node set when it
// is another node (false: this node owns the key, or nobody is known).
func (n *Node) ownerElsewhere(tenant string, hash uint64) (route.Peer, bool) {
	owner, ok := n.router.OwnerFor(tenant, hash)
	return owner, ok && owner.ID != n.cfg.ID
}

// fromOrigin sends out, a fill of the key with hash, to the origin,
// counted for the key if it is in the hot set.
func (n *Node) fromOrigin(hash uint64, out *http.Request) (*http.Response, error) {
	if o := n.ap.hot.lookup(hash); o != nil {
		return o.fetch(out)
	}
	return n.fill.Origin(out)
}

// fillConnsPerPeer bounds the peer-fill connections to one peer: fills are
// collapsed per key, so a few carry every copy and refresh.
const fillConnsPerPeer = 16

// peerUpstream fills the key with hash from the peer p; if p cannot be
// reached, from next. A peer that does not hold the object fills it from
// its own upstream, collapsed there, so the origin still sees one fetch.
// With next nil p is the key's owner, and this node asks the origin in its
// place only once its router suspects the owner (see viaUpstream); until
// then it asks the owner again as askOwnerAgain says, and the fill fails
// with errOwnerUnreachable.
func (n *Node) peerUpstream(p route.Peer, hash uint64, next fill.Upstream) fill.Upstream {
	return func(ctx context.Context, out *http.Request) (*http.Response, error) {
		// The peer must have applied every purge we have before it may
		// hand us a copy ("0": none, nothing to wait for). The header also
		// marks a peer fill, so the peer includes the object's tags.
		out.Header.Set(purgeRevHeader, strconv.FormatInt(n.lastPurge.Load(), 10))
		if next != nil {
			resp, err := n.fills.Fetch(ctx, out, p.Addr)
			if err == nil || ctx.Err() != nil {
				return resp, err
			}
			n.cfg.Logger.Debug("fill from peer failed; asking the owner", "peer", p.ID, "err", err)
			return next(ctx, out)
		}
		var err error
		for round := 1; ; round++ {
			var resp *http.Response
			if resp, err = n.fills.Fetch(ctx, out, p.Addr); err == nil {
				n.router.Observe(p.ID, nil)
				return resp, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			if n.router.Observe(p.ID, err) {
				n.cfg.Logger.Warn("peer suspected: forwards skip it for a while", "peer", p.ID, "err", err)
			}
			if n.router.Suspected(p.ID) {
				n.tookOver()
				n.cfg.Logger.Debug("fill from the owner failed and it is suspected; asking the origin", "peer", p.ID, "err", err)
				out.Header.Del(purgeRevHeader)
				return n.fromOrigin(hash, out)
			}
			if !n.askOwnerAgain(round, err) {
				return nil, fmt.Errorf("%w: %s: %v", errOwnerUnreachable, p.ID, err)
			}
		}
	}
}

// member returns the routing peer with the given ID.
func (n *Node) member(id string) (route.Peer, bool) {
	for _, p := range n.router.Peers() {
		if p.ID == id {
			return p, true
		}
	}
	return route.Peer{}, false
}
