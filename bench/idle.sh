#!/usr/bin/env bash
# The background cost of an idle cluster (session 12): embedded etcd
# (`crowdpilot up --nodes 0`) and 4 `crowdpilot node` processes on
# loopback, no load; prints each process's CPU (ms per second, user+system
# from /proc) and context switches per second over SECONDS (default 20).
# The last line is the etcd process.
#
#   go build -o /tmp/cp ./cmd/crowdpilot && bash bench/idle.sh /tmp/cp 20
set -euo pipefail
BIN=$1 S=${2:-20}
W=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
mapfile -t P < <(python3 -c 'import socket
for _ in range(11):
    s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$BIN" up --nodes 0 --log-level warn --etcd-listen "127.0.0.1:${P[0]}" --etcd-peer "127.0.0.1:${P[1]}" \
	--origin "http://127.0.0.1:${P[2]}" >"$W/up.log" 2>&1 &
up=$!
pids+=("$up")
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:${P[0]}/health" >/dev/null 2>&1 && break; sleep 0.2; done
nodes=()
for i in 0 1 2 3; do
	"$BIN" node --etcd "http://127.0.0.1:${P[0]}" --cluster idle --id "n$i" --listen "127.0.0.1:${P[$((3 + 2 * i))]}" \
		--admin "127.0.0.1:${P[$((4 + 2 * i))]}" --origin "http://127.0.0.1:${P[2]}" --admin-token idle --log-level warn >"$W/n$i.log" 2>&1 &
	nodes+=($!)
	pids+=($!)
done
for i in 0 1 2 3; do
	for _ in $(seq 100); do curl -fsS "http://127.0.0.1:${P[$((4 + 2 * i))]}/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
done
sleep 5 # past the nodes' start-up
cpu() { for p in "${nodes[@]}" "$up"; do awk '{print $14 + $15}' "/proc/$p/stat"; done; }
csw() { for p in "${nodes[@]}" "$up"; do cat /proc/"$p"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; done; }
hz=$(getconf CLK_TCK)
mapfile -t a < <(cpu)
mapfile -t ca < <(csw)
sleep "$S"
mapfile -t b < <(cpu)
mapfile -t cb < <(csw)
for k in 0 1 2 3 4; do
	name=n$k
	((k == 4)) && name=etcd
	echo "$name cpu_ms_per_s=$(((b[k] - a[k]) * 1000 / hz / S)) ctxsw_per_s=$(((cb[k] - ca[k]) / S))"
done
