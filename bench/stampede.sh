#!/usr/bin/env bash
# Stampedes side by side (issue 8): a 3-node crowdpilot cluster (`crowdpilot
# up`), nginx proxy_cache (lock, use_stale updating, background update) and
# Varnish, each in front of its own 200 ms demo origin, each hit by 2,000
# simultaneous requests (one connection each, released at once, round-robin
# over the contender's listeners) for
#   1. a cold object, and
#   2. an object expired 2 s ago (max-age 2, inside every contender's 10 s
#      stale window),
# three runs of each, the contender order rotating. It prints Markdown
# tables (origin fetches, p50/p90/p99/max, statuses, cache outcomes) and
# writes bench/out/stampede/results.jsonl and the contenders' logs.
#
#   sudo bash bench/stampede.sh                 # the full run, a few minutes
#   sudo bash bench/stampede.sh --runs 1 --requests 200
#
# Flags go to bench/stampede (go run ./bench/stampede --help). Everything
# listens on 127.0.0.1 on free ports, stops by itself (--deadline, 15 min by
# default) and is cleaned up on exit. Needs nginx and Varnish (installed
# from Debian when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=bench/out/stampede
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] || { echo "stampede: $1 missing and not root to install it" >&2; exit 2; }; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx
need varnishd varnish
export PATH=$PATH:/usr/sbin

go build -o "$OUT/crowdpilot" ./cmd/crowdpilot
go build -o "$OUT/stampede-bench" ./bench/stampede
ulimit -n "$(ulimit -Hn)"

pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	# Process groups the benchmark started, should it have died without
	# stopping them.
	if [ -f "$OUT/pgids" ]; then
		while read -r g; do kill -KILL -- "-$g" 2>/dev/null || true; done <"$OUT/pgids"
		rm -f "$OUT/pgids"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$OUT/stampede-bench" --crowdpilot "$OUT/crowdpilot" --out "$OUT" "$@" &
pid=$!
set +e
wait "$pid"
rc=$?
pid=
exit "$rc"
