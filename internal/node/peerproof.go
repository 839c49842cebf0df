package node

// The peer proof: how one node authenticates a call to another node's
// admin listener (heat reports, replica copies, tenant loads, proxied
// views, forwarded drains) without sending the admin token. The token
// never leaves a node: a member address read from etcd that is not a real
// node learns nothing it could use elsewhere.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// peerProofHeader carries the proof of a node-to-node admin call.
const peerProofHeader = "X-Crowdpilot-Peer-Proof"

// peerVersion starts every proof; a new format gets a new one.
const peerVersion = "p1"

// peerLabel derives the peer-proof key from the admin token, apart from
// the hop proof's and the etcd records' keys.
const peerLabel = "crowdpilot peer call v1"

// maxPeerBodyBytes bounds the body a proof covers (the largest node-to-node
// body is a heat report, maxReportBytes).
const maxPeerBodyBytes = 1 << 20

// peerProver makes and checks peer proofs: "p1.<unix ms>.<MAC>", where the
// MAC is HMAC-SHA256, under a key derived from the admin token, over the
// method, the request URI, the receiving node's ID, the timestamp and the
// SHA-256 of the body. A proof is good for that one call to that one node
// for hopWindow; it reveals nothing about the token.
type peerProver struct {
	key      []byte           // nil without a token: no proof is made or accepted
	now      func() time.Time // wall clock: proofs cross machines
	rejected prometheus.Counter
}

func newPeerProver(token string, now func() time.Time, reg prometheus.Registerer) peerProver {
	if now == nil {
		now = time.Now
	}
	p := peerProver{now: now, rejected: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "crowdpilot_peer_calls_rejected_total",
		Help: "Admin calls carrying a peer proof that is not valid for that call to this node (forged, replayed elsewhere, altered or expired): refused with 401.",
	})}
	if token != "" {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte(peerLabel))
		p.key = m.Sum(nil)
	}
	if reg != nil {
		reg.MustRegister(p.rejected)
	}
	return p
}

// mac is the hex MAC of one call.
func (p peerProver) mac(method, uri, to, ts string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, p.key)
	for _, s := range []string{method, uri, to, ts} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	m.Write(sum[:])
	return hex.EncodeToString(m.Sum(nil))
}

// proof is the peerProofHeader value for a call to node to, made at at;
// "" without a token.
func (p peerProver) proof(method, uri, to string, body []byte, at time.Time) string {
	if p.key == nil {
		return ""
	}
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	return peerVersion + "." + ts + "." + p.mac(method, uri, to, ts, body)
}

// verify reports whether value proves this call to node self, made within
// hopWindow of now. The MAC is compared in constant time.
func (p peerProver) verify(method, uri, self string, body []byte, value string, now time.Time) bool {
	if p.key == nil {
		return false
	}
	ts, sum, ok := openProof(value, peerVersion, now)
	return ok && hmac.Equal([]byte(sum), []byte(p.mac(method, uri, self, ts, body)))
}

// signPeerCall sets req's peer proof for a call to node to with body.
func (n *Node) signPeerCall(req *http.Request, to string, body []byte) {
	if v := n.ap.peer.proof(req.Method, req.URL.RequestURI(), to, body, n.ap.peer.now()); v != "" {
		req.Header.Set(peerProofHeader, v)
	}
}

// errPeerBodyTooLarge: a body over maxPeerBodyBytes with a peer proof.
var errPeerBodyTooLarge = errors.New("peer call body too large")

// peerProved reports whether r carries a valid peer proof for this node.
// It reads the body (bounded) to check it, and leaves r.Body readable
// again. A request without the header is not counted.
func (n *Node) peerProved(w http.ResponseWriter, r *http.Request) (bool, error) {
	vv := r.Header.Values(peerProofHeader)
	if len(vv) == 0 {
		return false, nil
	}
	if !n.peerChannelOK(r) {
		// With peer TLS, node-to-node calls come in on the peer listener
		// only: a proof on the admin listener is refused unread.
		n.ap.peer.rejected.Inc()
		return false, nil
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPeerBodyBytes))
		r.Body.Close()
		if err != nil {
			n.ap.peer.rejected.Inc()
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return false, errPeerBodyTooLarge
			}
			return false, err
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if len(vv) == 1 && n.ap.peer.verify(r.Method, r.URL.RequestURI(), n.cfg.ID, body, vv[0], n.ap.peer.now()) {
		return true, nil
	}
	n.ap.peer.rejected.Inc()
	return false, nil
}
