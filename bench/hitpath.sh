#!/usr/bin/env bash
# Hit path, side by side: one crowdpilot node and nginx proxy_cache serve the
# same cached 1 KiB object from memory to the same load generator (wrk), on
# the same machine, in one run. Prints both and the ratio.
#
#   bash bench/hitpath.sh            # 10 s per contender, wrk -t2 -c64
#   DURATION=30s CONNS=128 bash bench/hitpath.sh
#   CPU=0.25 THREADS=1 CONNS=32 bash bench/hitpath.sh
#                                    # each server alone in a cgroup of 0.25
#                                    # core (nginx: one worker), as root
#   CLOSE=1 bash bench/hitpath.sh   # a new connection per request
#   SPARSE=1 CPU=0.25 bash bench/hitpath.sh
#                                    # open loop, 2,250/s over 200 connections
#                                    # (RATE, SPARSE_CONNS): CPU per answer
#
# etcd and the demo origin run outside any cap (`up --nodes 0`); the node is
# a `crowdpilot node` of its own. Needs nginx and wrk (installed from Debian
# when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
CPU=${CPU:-}
OUT=bench/out/hitpath
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] || { echo "hitpath: $1 missing and not root to install it" >&2; exit 2; }; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx
need wrk wrk

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
CP_DATA=$(freeport); CP_ADMIN=$(freeport); ORIGIN=$(freeport); ETCD_C=$(freeport); ETCD_P=$(freeport); NGINX=$(freeport)

go build -o "$OUT/crowdpilot" ./cmd/crowdpilot
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The node runs under a subshell (run_in), so its own PID is not in pids:
  # stop it by its cluster name, unique to this run.
  pkill -f -- "--cluster hitpath-$$ " 2>/dev/null || true
  [ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  for d in /sys/fs/cgroup/crowdpilot-hitpath-* /sys/fs/cgroup/cpu/crowdpilot-hitpath-*; do
    [ -d "$d" ] || continue
    for _ in $(seq 1 50); do [ -s "$d/cgroup.procs" ] || break; sleep 0.1; done
    rmdir "$d" 2>/dev/null || true
  done
}
trap cleanup EXIT

# capped DIR: a cgroup with CPU cores of quota (v2 cpu.max or v1 cfs), or
# nothing without CPU; prints the cgroup.procs file to join.
capped() {
  [ -n "$CPU" ] || return 0
  local quota
  quota=$(python3 -c "print(int($CPU*100000))")
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    local d=/sys/fs/cgroup/crowdpilot-hitpath-$1
    mkdir -p "$d" && echo "$quota 100000" >"$d/cpu.max"
  else
    local d=/sys/fs/cgroup/cpu/crowdpilot-hitpath-$1
    mkdir -p "$d" && echo 100000 >"$d/cpu.cfs_period_us" && echo "$quota" >"$d/cpu.cfs_quota_us"
  fi
  echo "$d/cgroup.procs"
}
# run_in PROCS CMD...: run CMD inside the cgroup whose procs file is PROCS.
run_in() { local procs=$1; shift; if [ -n "$procs" ]; then sh -c 'echo $$ >"$0"; exec "$@"' "$procs" "$@"; else "$@"; fi; }

"$OUT/crowdpilot" up --nodes 0 --demo-listen 127.0.0.1:$ORIGIN \
  --etcd-listen 127.0.0.1:$ETCD_C --etcd-peer 127.0.0.1:$ETCD_P --log-level warn >"$OUT/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$ETCD_C/health" && break; sleep 0.1; done
CP_PROCS=$(capped node)
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') # the admin API's, for PROFILE
run_in "$CP_PROCS" "$OUT/crowdpilot" node --etcd "http://127.0.0.1:$ETCD_C" --cluster "hitpath-$$" --id n1 \
  --listen 127.0.0.1:$CP_DATA --admin 127.0.0.1:$CP_ADMIN --origin "http://127.0.0.1:$ORIGIN" \
  --autopilot=false --admin-token "$TOKEN" --log-level warn >"$OUT/node.log" 2>&1 &
pids+=($!)

WORKERS=auto
[ -n "$CPU${SPARSE:-}" ] && WORKERS=1 # one worker: the CPU is read off one process
cat >"$OUT/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $PWD/$OUT/nginx.pid;
error_log $PWD/$OUT/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_cache_path /dev/shm/crowdpilot-bench-nginx levels=1:2 keys_zone=c:16m max_size=256m inactive=10m use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      proxy_cache_lock on;
      proxy_cache_use_stale updating error timeout;
      proxy_cache_background_update on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
EOF
run_in "$(capped nginx)" nginx -c "$PWD/$OUT/nginx.conf"

wait_ok() { for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "hitpath: $1 never answered" >&2; exit 1; }
wait_ok "http://127.0.0.1:$CP_DATA/obj/1"
wait_ok "http://127.0.0.1:$NGINX/obj/1"
curl -s -o /dev/null "http://127.0.0.1:$NGINX/obj/1"

if [ -n "${SPARSE:-}" ]; then
  # SPARSE=1: open-loop traffic at RATE/s over SPARSE_CONNS keep-alive
  # connections (one request per wakeup, as a node behind a round-robin
  # balancer sees), twice each, alternated; the figure is the server's CPU
  # per answer.
  go build -o "$OUT/olc" ./bench/olc
  RATE=${RATE:-2250}; SC=${SPARSE_CONNS:-200}
  NGPID=$(cat "$OUT/nginx.pid"); NGPID=$(pgrep -P "$NGPID" | head -1)
  CPPID=$(pgrep -f "crowdpilot node --etcd http://127.0.0.1:$ETCD_C" | head -1)
  echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); olc $RATE/s over $SC connections for $DURATION, 1 KiB object${CPU:+; each server in a cgroup of $CPU core}"
  for i in 1 2; do
    echo "nginx      $("$OUT/olc" -addr 127.0.0.1:$NGINX -path /obj/1 -rate "$RATE" -conns "$SC" -d "$DURATION" -pid "$NGPID")"
    echo "crowdpilot $("$OUT/olc" -addr 127.0.0.1:$CP_DATA -path /obj/1 -rate "$RATE" -conns "$SC" -d "$DURATION" -pid "$CPPID")"
  done
  exit 0
fi

# CLOSE=1: every request on a new connection (Connection: close), as a
# crowd of new clients arrives: accept and first request, not keep-alive.
WRK_EXTRA=()
[ "${CLOSE:-}" = 1 ] && WRK_EXTRA=(-H "Connection: close")
run() { # name url
  # PROFILE=1: a CPU profile of the node over its run, in $OUT/node.pprof.
  [ "${PROFILE:-}" = 1 ] && [ "$1" = crowdpilot ] &&
    (sleep 1; curl -fsS -H "Authorization: Bearer $TOKEN" -o "$OUT/node.pprof" "http://127.0.0.1:$CP_ADMIN/debug/pprof/profile?seconds=5" || echo "hitpath: no profile" >&2; curl -fsS -H "Authorization: Bearer $TOKEN" -o "$OUT/node.allocs.pprof" "http://127.0.0.1:$CP_ADMIN/debug/pprof/allocs" || true) &
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${WRK_EXTRA[@]}" "$2" >"$OUT/$1.txt"
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$OUT/$1.txt")
  p99=$(awk '$1=="99%" {print $2}' "$OUT/$1.txt")
  echo "$1 $rps $p99"
}
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$THREADS -c$CONNS -d$DURATION, 1 KiB object${CPU:+; each server in a cgroup of $CPU core}${CLOSE:+; a new connection per request}"
a=$(run nginx "http://127.0.0.1:$NGINX/obj/1")
b=$(run crowdpilot "http://127.0.0.1:$CP_DATA/obj/1")
c=$(run nginx-again "http://127.0.0.1:$NGINX/obj/1")
printf '%-12s %12s %10s\n' contender req/s p99
for r in "$a" "$b" "$c"; do printf '%-12s %12s %10s\n' $r; done
python3 - "$a" "$b" "$c" <<'PY'
import sys
def ms(v):
    for u, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(u): return float(v[:-len(u)]) * f
n1, cp, n2 = (l.split() for l in sys.argv[1:])
nginx_rps = (float(n1[1]) + float(n2[1])) / 2
nginx_p99 = (ms(n1[2]) + ms(n2[2])) / 2
print(f"ratio crowdpilot/nginx: throughput {float(cp[1])/nginx_rps:.2f}, p99 {ms(cp[2])/nginx_p99:.2f} (nginx averaged over the runs before and after)")
PY
