package node

// The hop proof: what a node puts in route.HopHeader when it forwards a
// request or fills from a peer, and the one check the receiver makes.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/route"
)

// hopWindow is how far a proof's timestamp may be from the receiver's
// clock. A forward is checked the moment it arrives, so the window only
// has to cover clock skew between nodes; a captured proof is useless after
// it, and for any other method or key at once.
const hopWindow = 10 * time.Second

// hopVersion starts every proof; a new format gets a new one.
const hopVersion = "v2"

// hopProver makes and checks hop proofs: "v2.<unix ms>.<MAC>", where the
// MAC is HMAC-SHA256 under the admin token over the method, the cache key
// and the timestamp. Without a token anyone can compute it (as anyone
// could mark a hop before): run with --admin-token on a public port.
type hopProver struct {
	token    []byte
	now      func() time.Time // wall clock: proofs cross machines
	rejected prometheus.Counter
}

func newHopProver(token string, now func() time.Time, reg prometheus.Registerer) hopProver {
	if now == nil {
		now = time.Now
	}
	p := hopProver{token: []byte(token), now: now, rejected: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crowdpilot_hop_rejected_total",
		Help: "Requests carrying a hop header without a valid proof for that request (forged, replayed or expired): served as clients' requests.",
	})}
	if reg != nil {
		reg.MustRegister(p.rejected)
	}
	return p
}

// mac is the hex MAC of (method, key, ts).
func (p hopProver) mac(method, key, ts string) string {
	m := hmac.New(sha256.New, p.token)
	m.Write([]byte("crowdpilot hop " + hopVersion + "\x00"))
	m.Write([]byte(method))
	m.Write([]byte{0})
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write([]byte(ts))
	return hex.EncodeToString(m.Sum(nil))
}

// proof is the hop header value for a request with this method and cache
// key, made at time at.
func (p hopProver) proof(method, key string, at time.Time) string {
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	return hopVersion + "." + ts + "." + p.mac(method, key, ts)
}

// verify reports whether value is a proof for this method and key made
// within hopWindow of now. The MAC is compared in constant time.
func (p hopProver) verify(method, key, value string, now time.Time) bool {
	ts, sum, ok := openProof(value, hopVersion, now)
	return ok && hmac.Equal([]byte(sum), []byte(p.mac(method, key, ts)))
}

// openProof splits a "version.millis.mac" proof and checks that its
// timestamp lies within hopWindow of now; the caller checks the MAC.
func openProof(value, version string, now time.Time) (ts, sum string, ok bool) {
	rest, ok := strings.CutPrefix(value, version+".")
	if !ok {
		return "", "", false
	}
	ts, sum, ok = strings.Cut(rest, ".")
	if !ok || len(ts) == 0 || len(ts) > 19 {
		return "", "", false
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ms < 0 {
		return "", "", false
	}
	if d := now.Sub(time.UnixMilli(ms)); d > hopWindow || d < -hopWindow {
		return "", "", false
	}
	return ts, sum, true
}

// outboundHop is the route.ForwarderConfig.Hop of this node: a proof for
// the request as it leaves (its method, or invalidateMethod for a peer
// invalidation, and its cache key). A request that has
// no key gets no valid proof, and the peer treats it as a client's.
func (n *Node) outboundHop(out *http.Request) string {
	base, err := n.baseKey(out)
	if err != nil {
		return ""
	}
	return n.hop.proof(hopMethod(out), base, n.hop.now())
}

// admitHop is the one check of an incoming hop: it reports whether r
// carries a valid proof for its own method and key (base), on the peer
// listener when the node runs peer TLS. Anything else is a client's
// request, and every internal header it carries (a forged
// or replayed hop, a purge revision that would expose tags) is deleted
// before anything reads it.
func (n *Node) admitHop(r *http.Request, base string) bool {
	vv := r.Header[route.HopHeader]
	if len(vv) == 1 && n.peerChannelOK(r) && n.hop.verify(hopMethod(r), base, vv[0], n.hop.now()) {
		return true
	}
	if len(vv) > 0 {
		n.hop.rejected.Inc()
	}
	route.StripInternal(r.Header)
	return false
}
