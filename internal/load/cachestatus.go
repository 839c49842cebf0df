package load

import (
	"strconv"
	"strings"
)

// CacheCounts counts answered requests by their Cache-Status (RFC 9211).
// Responses without the header are not counted.
type CacheCounts struct {
	Hit   int64 `json:"hit"`
	Stale int64 `json:"stale"`
	Miss  int64 `json:"miss"`
	Other int64 `json:"other"`
}

// cacheClass is what a Cache-Status header says about a response.
type cacheClass uint8

const (
	cacheNone cacheClass = iota
	cacheHit
	cacheStale
	cacheMiss
	cacheOther
)

// classifyCacheStatus reads Cache-Status field values (RFC 9211). The first
// member that served from a cache decides (hit, or stale when ttl < 0, a
// stale token or fwd=stale goes with the hit); otherwise any forwarded member
// makes it a miss.
func classifyCacheStatus(values []string) cacheClass {
	out := cacheNone
	for _, v := range values {
		for member := range strings.SplitSeq(v, ",") {
			params := strings.Split(member, ";")
			if strings.TrimSpace(params[0]) == "" {
				continue
			}
			var hit, stale, fwd bool
			for _, p := range params[1:] {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				switch strings.ToLower(k) {
				case "hit":
					hit = true
				case "stale":
					stale = true
				case "fwd":
					fwd = true
					stale = stale || strings.EqualFold(strings.Trim(val, `"`), "stale")
				case "ttl":
					if n, err := strconv.ParseInt(val, 10, 64); err == nil && n < 0 {
						stale = true
					}
				}
			}
			switch {
			case hit && stale:
				return cacheStale
			case hit:
				return cacheHit
			case fwd:
				out = cacheMiss
			case out == cacheNone:
				out = cacheOther
			}
		}
	}
	return out
}
