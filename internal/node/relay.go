package node

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/crowdpilot/crowdpilot/internal/fill"
)

// relayBuf is the copy buffer of one relayed response.
const relayBuf = 32 << 10

// writeStream writes s, one share of a response too large to store
// (fill.Stream), and closes it. A body cut short upstream, or this reader
// cut for lagging, aborts the response (http.ErrAbortHandler), so the
// client sees a truncated response rather than a complete-looking one.
func (n *Node) writeStream(w http.ResponseWriter, r *http.Request, s *fill.Stream, cacheStatus, servedBy []string) {
	defer s.Body.Close()
	h := w.Header()
	for k, v := range s.Header {
		h[k] = v
	}
	h["Age"] = []string{strconv.FormatInt(int64(s.Age.Seconds()), 10)}
	h["Cache-Status"] = cacheStatus
	h["X-Served-By"] = servedBy
	if len(s.Tags) > 0 && r.Header.Get(purgeRevHeader) != "" {
		// A router relaying it on checks purges by tag too (writeEntry).
		h["Surrogate-Key"] = []string{strings.Join(s.Tags, " ")}
	}
	w.WriteHeader(s.Status)
	if r.Method == http.MethodHead {
		return
	}
	buf := make([]byte, relayBuf)
	for {
		k, err := s.Body.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return // the client went away
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			if r.Context().Err() == nil {
				n.cfg.Logger.Debug("relayed response cut", "path", r.URL.Path, "err", err)
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// relayStatus is the Cache-Status of a relayed response; detail is relay
// (from the origin) or relay-peer (from R(k)).
func relayStatus(s *fill.Stream, collapsed bool, detail string) string {
	st := "crowdpilot; fwd=miss; fwd-status=" + strconv.Itoa(s.Status) + "; detail=" + detail
	if collapsed {
		st += "; collapsed"
	}
	return st
}
