#!/usr/bin/env bash
# bench/testbed.sh: the flash-crowd testbed (issue 4).
#
# On one Linux machine, as root, it runs the same open-loop flash crowd
# against four contenders, one after the other, with the same CPU:
#
#   crowdpilot-autopilot  N `crowdpilot node` processes, autopilot on
#   crowdpilot-off        N `crowdpilot node` processes, autopilot off
#   nginx                 N nginx instances (1 worker each) with proxy_cache
#
# Every node (or nginx instance) is a separate process in a cgroup of its
# own with a CPU quota (--cpu cores each), except nginx-1core:
#
#   nginx-1core           one nginx with N worker processes (one shared
#                         proxy_cache) in ONE cgroup of N x --cpu cores
#
# The client round-robins over N targets for every contender (for
# nginx-1core, N times the one listener), so the request pattern is the
# same. One embedded etcd and the slow
# demo origin (`testbed origin`, internal/demo noting when it served the
# hot object; `crowdpilot up --nodes 0` runs etcd) and the load generator
# (`crowdpilot load`) run outside the caps; the origin is limited by its own
# concurrency limit (--demo-capacity). Everything listens on 127.0.0.1 on
# ports probed free at start.
#
# Results: a section of bench/RESULTS.md (between <!-- testbed:begin/end -->)
# and one chart per contender, bench/flashcrowd-<contender>.png. Raw files
# (load JSON, logs, /metrics, cpu.stat) stay in bench/out/run-<time>/.
# --quick runs a ~20 s schedule and writes to bench/out/ instead.
#
# --tenants runs another scenario instead of the contenders: one crowdpilot
# cluster (6 nodes) with two tenants, a and b (by Host), a crowd on a and
# steady traffic on b from two `crowdpilot load --host` runs at once; it
# reports b's p99 before, during and after a's crowd, both tenants' node
# sets over time and the capacity events, in the section "Two tenants: a
# crowd on one, steady traffic on the other" and bench/tenants.png.
#
# Run `bench/testbed.sh --help` for the flags.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
ORIG_ARGS=("$@")

usage() {
	cat <<'EOF'
usage: sudo bench/testbed.sh [flags]

Scenario (durations in whole seconds, "10" or "10s"):
  --rate R              baseline requests/s (default 100: 5000/s in the crowd)
  --mult M              crowd multiplier, a step on the hot object (default 50)
  --before S            seconds of baseline before the crowd (default 10)
  --hold S              seconds the crowd lasts (default 30)
  --after S             seconds of baseline after the crowd (default 30)
  --quick               smoke run: --before 4 --hold 8 --after 8, results to bench/out/
  --hot PATH            the crowd's object (default /live/match-1)
  --keys N --zipf S     catalogue for the baseline (default 10000, 1.1)
  --seed N              key choice seed (default 1)
  --timeout D           per-request timeout of the generator (default 5s)
  --max-inflight N      generator in-flight cap (default 10000)
  --objective D         p99 objective per second for the recovery time (default 100ms)

Testbed:
  --nodes N             nodes (nginx instances) per contender (default 4)
  --cpu C               CPU quota of each node's cgroup, in cores (default 0.25)
  --contenders LIST     comma-separated, from crowdpilot-autopilot,crowdpilot-off,nginx,nginx-1core
                        (default all four, in that order; nginx-1core is one nginx with
                        --nodes workers in one cgroup of --nodes x --cpu cores)
  --demo-latency D      demo origin response time (default 50ms)
  --demo-capacity N     demo origin concurrency before it queues, sheds past 4x (default 8)
  --demo-max-age S      demo origin Cache-Control max-age, whole seconds (default 5): the TTL
                        the hot object's origin fetches are counted against
  --priority P          CPU weight of the testbed's cgroups against the rest of the machine,
                        as a multiple of the default (default 16; 1 leaves the defaults): the
                        harness (generator, etcd, origin) gets P x the default weight, each
                        contender cgroup P x default x its cores, so other work on a shared
                        machine cannot starve the generator or hold a node below its quota
  --binary PATH         use this crowdpilot binary instead of building one
  --results FILE        markdown file for the section (default bench/RESULTS.md;
                        bench/out/RESULTS.quick.md with --quick)
  --charts DIR          where the PNGs go (default bench/; bench/out/ with --quick)

Two tenants (--tenants: one crowdpilot cluster, autopilot and capacity manager on;
these defaults apply unless the flags above are given: --nodes 6 --cpu 0.2
--mult 20 --before 20 --hold 40 --after 70 --keys 1000 --demo-max-age 300):
  --tenants             run the two-tenant scenario instead of the contenders
  --b-rate R            tenant b's steady requests/s (default 200); --rate is a's baseline
  --b-keys N            tenant b's catalogue (default 200: warm after the warm-up, so b's
                        latency is the nodes', not the origin's); --keys is a's
  --tenant-min N        both tenants' min (and starting) node count (default 2)
  --warm S              seconds of both tenants' baseline before the measured run, unmeasured (default 10)

Autopilot (passed to the autopilot contender's nodes when `crowdpilot node`
has the flag; the defaults are the autopilot's own):
  --replica-target-rps R (1000)  --max-replicas N (8)  --replica-ttl D (10s: short, so scale-in shows within --after)
  --scale-cooldown D (5s)        --scale-in-hold D (10s)
EOF
}

# Exit 2: bad input or a precondition the operator must fix; nothing ran.
die() {
	echo "testbed: $*" >&2
	exit 2
}
fail() {
	echo "testbed: $*" >&2
	exit 1
}
log() { printf '%s testbed: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- flags

RATE=100 MULT=50 BEFORE=10 HOLD=30 AFTER=30 QUICK=0
HOT=/live/match-1 KEYS=10000 ZIPF=1.1 SEED=1 TIMEOUT=5s MAXIN=10000 OBJECTIVE=100ms
NODES=4 CPU=0.25 CONTENDERS=crowdpilot-autopilot,crowdpilot-off,nginx,nginx-1core
DEMO_LATENCY=50ms DEMO_CAPACITY=8 DEMO_MAXAGE=5 PRIORITY=16 BINARY="" RESULTS="" CHARTS=""
AP_TARGET=1000 AP_MAX=8 AP_TTL=10s AP_COOLDOWN=5s AP_HOLD=10s
SET_BEFORE="" SET_HOLD="" SET_AFTER=""
TENANTS=0 B_RATE=200 B_KEYS=200 T_MIN=2 WARM=10
declare -A GIVEN=() # the flags given, for --tenants' defaults

secs() { # secs FLAG VALUE: whole seconds from "10" or "10s"
	local v=${2%s}
	[[ $v =~ ^[0-9]+$ ]] || die "$1 $2: want whole seconds, like 10 or 10s"
	echo $((10#$v))
}
need() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
	f=$1
	v=""
	if [[ $f == --*=* ]]; then
		v=${f#*=}
		f=${f%%=*}
		set -- "$f" "$v" "${@:2}"
	fi
	case $f in
	-h | --help) usage; exit 0 ;;
	--quick) QUICK=1; shift; continue ;;
	--tenants) TENANTS=1; shift; continue ;;
	--b-rate | --b-keys | --tenant-min | --warm | \
		--rate | --mult | --before | --hold | --after | --hot | --keys | --zipf | --seed | --timeout | \
		--max-inflight | --objective | --nodes | --cpu | --contenders | --demo-latency | --demo-capacity | --demo-max-age | --priority | \
		--binary | --results | --charts | --replica-target-rps | --max-replicas | --replica-ttl | \
		--scale-cooldown | --scale-in-hold)
		need "$@"; v=$2; shift 2 ;;
	*) die "unknown flag $f (see --help)" ;;
	esac
	GIVEN[$f]=1
	case $f in
	--b-rate) B_RATE=$v ;;
	--b-keys) B_KEYS=$v ;;
	--tenant-min) T_MIN=$v ;;
	--warm) WARM=$(secs "$f" "$v") || exit 2 ;;
	--rate) RATE=$v ;;
	--mult) MULT=$v ;;
	--before) SET_BEFORE=$(secs "$f" "$v") || exit 2 ;;
	--hold) SET_HOLD=$(secs "$f" "$v") || exit 2 ;;
	--after) SET_AFTER=$(secs "$f" "$v") || exit 2 ;;
	--hot) HOT=$v ;;
	--keys) KEYS=$v ;;
	--zipf) ZIPF=$v ;;
	--seed) SEED=$v ;;
	--timeout) TIMEOUT=$v ;;
	--max-inflight) MAXIN=$v ;;
	--objective) OBJECTIVE=$v ;;
	--nodes) NODES=$v ;;
	--cpu) CPU=$v ;;
	--contenders) CONTENDERS=$v ;;
	--demo-latency) DEMO_LATENCY=$v ;;
	--demo-capacity) DEMO_CAPACITY=$v ;;
	--demo-max-age) DEMO_MAXAGE=$(secs "$f" "$v") || exit 2 ;;
	--priority) PRIORITY=$v ;;
	--binary) BINARY=$v ;;
	--results) RESULTS=$v ;;
	--charts) CHARTS=$v ;;
	--replica-target-rps) AP_TARGET=$v ;;
	--max-replicas) AP_MAX=$v ;;
	--replica-ttl) AP_TTL=$v ;;
	--scale-cooldown) AP_COOLDOWN=$v ;;
	--scale-in-hold) AP_HOLD=$v ;;
	esac
done

if ((TENANTS)); then
	[[ -z ${GIVEN[--contenders]:-} ]] || die "--contenders: not with --tenants (one crowdpilot cluster)"
	CONTENDERS=tenants
	given() { [[ -n ${GIVEN[--$1]:-} ]]; }
	given nodes || NODES=6
	given cpu || CPU=0.2
	given mult || MULT=20
	given keys || KEYS=1000
	given demo-max-age || DEMO_MAXAGE=300
	BEFORE=20 HOLD=40 AFTER=70
	((QUICK)) && WARM=5
	[[ $B_RATE =~ ^[0-9]*\.?[0-9]+$ ]] || die "--b-rate $B_RATE: want requests per second"
	[[ $T_MIN =~ ^[0-9]+$ ]] && ((T_MIN >= 1)) || die "--tenant-min $T_MIN: want a count >= 1"
	[[ $B_KEYS =~ ^[0-9]+$ ]] && ((B_KEYS >= 1)) || die "--b-keys $B_KEYS: want a count >= 1"
fi
if ((QUICK)); then
	BEFORE=4 HOLD=8 AFTER=8
	: "${RESULTS:=$REPO/bench/out/RESULTS.quick.md}"
	: "${CHARTS:=$REPO/bench/out}"
fi
: "${RESULTS:=$REPO/bench/RESULTS.md}"
: "${CHARTS:=$REPO/bench}"
BEFORE=${SET_BEFORE:-$BEFORE} HOLD=${SET_HOLD:-$HOLD} AFTER=${SET_AFTER:-$AFTER}
TOTAL=$((BEFORE + HOLD + AFTER))

[[ $NODES =~ ^[0-9]+$ ]] && ((NODES >= 1 && NODES <= 32)) || die "--nodes $NODES: want 1..32"
[[ $CPU =~ ^[0-9]*\.?[0-9]+$ ]] || die "--cpu $CPU: want cores, like 0.25"
PERIOD_US=100000
QUOTA_US=$(awk -v c="$CPU" -v p="$PERIOD_US" 'BEGIN { printf "%d", c * p + 0.5 }')
((QUOTA_US >= 1000)) || die "--cpu $CPU: want at least 0.01 core"
[[ $RATE =~ ^[0-9]*\.?[0-9]+$ ]] || die "--rate $RATE: want requests per second"
[[ $MULT =~ ^[0-9]*\.?[0-9]+$ ]] || die "--mult $MULT: want a multiplier, like 50"
((HOLD >= 1 && TOTAL <= 3600)) || die "want --hold >= 1s and a run of at most an hour"
[[ $HOT == /* ]] || die "--hot $HOT: want a path starting with /"
IFS=, read -r -a WANT <<<"$CONTENDERS"
((${#WANT[@]} > 0)) || die "--contenders is empty"
for c in "${WANT[@]}"; do
	case $c in crowdpilot-autopilot | crowdpilot-off | nginx | nginx-1core) ;; tenants) ((TENANTS)) || die "--contenders: unknown contender $c" ;; *) die "--contenders: unknown contender $c" ;; esac
done
[[ $PRIORITY =~ ^[0-9]+$ ]] && ((PRIORITY >= 1 && PRIORITY <= 64)) || die "--priority $PRIORITY: want 1..64"
((DEMO_MAXAGE >= 1)) || die "--demo-max-age $DEMO_MAXAGE: want at least 1s"
[[ $DEMO_CAPACITY =~ ^[0-9]+$ ]] && ((DEMO_CAPACITY >= 1)) || die "--demo-capacity $DEMO_CAPACITY: want a count >= 1"
CROWD="${MULT}x@${BEFORE}s+${HOLD}s"
# nginx-1core's one cgroup: N x --cpu cores.
QUOTA1_US=$(awk -v c="$CPU" -v n="$NODES" -v p="$PERIOD_US" 'BEGIN { printf "%d", n * c * p + 0.5 }')

# ---------------------------------------------------------------- preconditions

[[ $(uname -s) == Linux ]] || die "needs Linux (cgroups)"
[[ $(id -u) == 0 ]] || die "needs root (per-node cgroups with a CPU quota, apt-get); run: sudo bench/testbed.sh ${ORIG_ARGS[*]}"
for t in curl awk timeout flock; do
	command -v "$t" >/dev/null || die "needs $t"
done

# cgroups: v2 with the cpu controller (cpu.max), else v1's cpu controller
# (cpu.cfs_quota_us).
CGV="" CGBASE=""
while read -r _ mnt typ opts _; do
	if [[ $typ == cgroup2 && -z $CGV ]] && grep -qw cpu "$mnt/cgroup.controllers" 2>/dev/null; then
		CGV=2 CGBASE=$mnt
	fi
done </proc/mounts
if [[ -z $CGV ]]; then
	while read -r _ mnt typ opts _; do
		if [[ $typ == cgroup && ,$opts, == *,cpu,* ]]; then
			CGV=1 CGBASE=$mnt
			break
		fi
	done </proc/mounts
fi
[[ -n $CGV ]] || die "needs cgroups with a CPU controller (cgroup v2 with cpu in cgroup.controllers, or a v1 cpu hierarchy); none is mounted"
[[ -w $CGBASE ]] || die "cgroup hierarchy $CGBASE is not writable (read-only mount or no delegation)"
CGROOT=$CGBASE/crowdpilot-bench

# One run at a time: two would share the CPU and spoil each other's numbers.
LOCK=/run/lock/crowdpilot-testbed.lock
mkdir -p "$(dirname "$LOCK")" && exec 9>"$LOCK" || die "cannot open $LOCK"
flock -n 9 || die "another testbed run holds $LOCK"

# Leftovers of a run that was killed hard: empty cgroups are removed; a
# cgroup with processes in it is left for the operator.
if [[ -d $CGROOT ]]; then
	for d in "$CGROOT"/*/; do
		[[ -d $d ]] || continue
		if [[ -s $d/cgroup.procs ]]; then
			die "leftover testbed processes in $d (pids: $(tr '\n' ' ' <"$d/cgroup.procs")); stop them, then rmdir $d"
		fi
		rmdir "$d" 2>/dev/null || die "cannot remove leftover cgroup $d"
	done
fi

# weigh DIR CORES: the cgroup's CPU weight, --priority x the default x CORES
# (at least the default), so that contenders weigh by the CPU they are given.
weigh() {
	local d=$1 w
	((PRIORITY > 1)) || return 0
	if [[ $CGV == 2 ]]; then
		w=$(awk -v p="$PRIORITY" -v c="$2" 'BEGIN { w = int(100 * p * c + 0.5); if (w < 100) w = 100; if (w > 10000) w = 10000; print w }')
		echo "$w" >"$d/cpu.weight"
	else
		w=$(awk -v p="$PRIORITY" -v c="$2" 'BEGIN { w = int(1024 * p * c + 0.5); if (w < 1024) w = 1024; print w }')
		echo "$w" >"$d/cpu.shares"
	fi
}
mkcg() { # mkcg DIR [QUOTA_US]: a cgroup with the CPU quota (default one node's); prints nothing
	local d=$1 q=${2:-$QUOTA_US}
	mkdir -p "$d" || return 1
	if [[ $CGV == 2 ]]; then
		echo "$q $PERIOD_US" >"$d/cpu.max" || return 1
	else
		echo "$PERIOD_US" >"$d/cpu.cfs_period_us" && echo "$q" >"$d/cpu.cfs_quota_us" || return 1
	fi
	weigh "$d" "$(awk -v q="$q" -v p="$PERIOD_US" 'BEGIN { print q / p }')" || return 1
}
if [[ $CGV == 2 ]]; then
	# v2 hands the cpu controller down level by level; a non-root cgroup
	# with processes in it cannot (a container without delegation).
	if ! grep -qw cpu "$CGBASE/cgroup.subtree_control" 2>/dev/null; then
		echo +cpu >"$CGBASE/cgroup.subtree_control" 2>/dev/null ||
			die "cannot enable the cpu controller in $CGBASE/cgroup.subtree_control (processes in a non-root cgroup?); run on the host or in a delegated cgroup"
	fi
	mkdir -p "$CGROOT" && { grep -qw cpu "$CGROOT/cgroup.subtree_control" || echo +cpu >"$CGROOT/cgroup.subtree_control"; } 2>/dev/null ||
		die "cannot enable the cpu controller in $CGROOT"
fi
mkcg "$CGROOT/probe" && rmdir "$CGROOT/probe" || die "cannot create a cgroup with a CPU quota under $CGROOT"
# The weights below split $CGROOT's share; $CGROOT itself weighs as much as
# the harness and the contender together against the rest of the machine.
weigh "$CGROOT" "$(awk -v c="$CPU" -v n="$NODES" 'BEGIN { print 1 + n * c }')" || die "cannot set the CPU weight of $CGROOT"

# ---------------------------------------------------------------- state and cleanup

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$REPO/bench/out
RUN=$OUT/run-$RUN_ID
SHM=/dev/shm/crowdpilot-bench-$$
PIDS=()    # every process started, for the trap
CGROUPS=() # every cgroup made, for the trap
mkdir -p "$RUN" "$CHARTS" "$(dirname "$RESULTS")" || fail "cannot create $RUN"

alive() { kill -0 "$1" 2>/dev/null; }

# stop PID...: TERM, wait up to 15 s, then KILL. Only our own children.
stop() {
	local p end=$((SECONDS + 15))
	for p in "$@"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
	for p in "$@"; do
		while alive "$p" && ((SECONDS < end)); do sleep 0.1; done
		if alive "$p"; then
			log "pid $p did not stop in 15 s; killing it"
			kill -KILL "$p" 2>/dev/null
		fi
		wait "$p" 2>/dev/null
	done
}

# rmcg DIR: kill what is still in our cgroup (only processes this script
# started, e.g. nginx workers), then remove it.
rmcg() {
	local d=$1 end=$((SECONDS + 5)) p
	[[ -d $d ]] || return 0
	while [[ -s $d/cgroup.procs ]] && ((SECONDS < end)); do
		while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$d/cgroup.procs"
		sleep 0.1
	done
	rmdir "$d" 2>/dev/null || log "could not remove cgroup $d"
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	((${#PIDS[@]})) && stop "${PIDS[@]}"
	local i
	for ((i = ${#CGROUPS[@]} - 1; i >= 0; i--)); do rmcg "${CGROUPS[i]}"; done
	rmdir "$CGROOT" 2>/dev/null
	rm -rf "$SHM"
	((rc)) && log "exit $rc; logs in ${RUN#"$REPO"/}"
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

# start CGROUP LOG CMD...: run CMD in the background, already inside
# CGROUP (empty: no cgroup), so none of its threads ever runs uncapped.
# Sets STARTED to its pid.
start() {
	local cg=$1 logf=$2
	shift 2
	if [[ -n $cg ]]; then
		bash -c 'echo $$ >"$1/cgroup.procs" || exit 97; shift; exec "$@"' _ "$cg" "$@" >"$logf" 2>&1 </dev/null &
	else
		"$@" >"$logf" 2>&1 </dev/null &
	fi
	STARTED=$!
	PIDS+=("$STARTED")
}

# wait_http URL SECONDS PID [CHECK]: poll until URL answers 200 (and its body
# passes CHECK, a command reading it on stdin), PID dies, or the deadline.
wait_http() {
	local url=$1 end=$((SECONDS + $2)) pid=$3 check=${4:-true} body
	while ((SECONDS < end)); do
		alive "$pid" || return 1
		if body=$(curl -fsS --max-time 1 "$url" 2>/dev/null) && $check <<<"$body"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

json_str() { # a JSON string literal
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/ }
	printf '"%s"' "$s"
}
origin_stats() { curl -fsS --max-time 3 "$ORIGIN/_stats" 2>/dev/null | tr -d '\n' || true; }

# ---------------------------------------------------------------- build

log "cgroup v$CGV at $CGBASE; $NODES nodes x $CPU core ($QUOTA_US/$PERIOD_US us) per contender"
if [[ " ${WANT[*]} " == *" nginx"* ]] && ! command -v nginx >/dev/null; then
	log "installing nginx from the distribution's packages"
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get install -y nginx || { apt-get update && apt-get install -y nginx; }; } >"$RUN/apt.log" 2>&1 ||
		fail "apt-get install nginx failed; see ${RUN#"$REPO"/}/apt.log"
	command -v nginx >/dev/null || fail "nginx still not found after apt-get install"
fi

if [[ -n $BINARY ]]; then
	BIN=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
	[[ -x $BIN ]] || die "--binary $BINARY is not an executable"
else
	BIN=$OUT/crowdpilot
	log "building crowdpilot"
	(cd "$REPO" && go build -o "$BIN" ./cmd/crowdpilot) >"$RUN/build.log" 2>&1 ||
		fail "go build ./cmd/crowdpilot failed: $(head -c 600 "$RUN/build.log")"
fi
TB=$OUT/testbed
(cd "$REPO" && go build -o "$TB" ./bench/testbed) >>"$RUN/build.log" 2>&1 ||
	fail "go build ./bench/testbed failed: $(head -c 600 "$RUN/build.log")"

NODE_HELP=$("$BIN" node --help 2>&1)
# Flags print as -name (Go's flag package) or --name (crowdpilot's help).
has_flag() { grep -qE -- "^[[:space:]]+--?$1([[:space:]]|$)" <<<"$NODE_HELP"; }

# ---------------------------------------------------------------- etcd and origin

mapfile -t P < <("$TB" ports 3) && ((${#P[@]} == 3)) || fail "cannot find free ports"
ETCD=http://127.0.0.1:${P[0]}
ORIGIN=http://127.0.0.1:${P[2]}
# The harness (origin, etcd, load generator): no quota, --priority x the
# default weight.
HCG=$CGROOT/harness
CGROUPS+=("$HCG")
mkdir -p "$HCG" && weigh "$HCG" 1 || fail "cannot create the harness cgroup $HCG"
start "$HCG" "$RUN/origin.log" "$TB" origin --listen "127.0.0.1:${P[2]}" --latency "$DEMO_LATENCY" \
	--capacity "$DEMO_CAPACITY" --max-age "${DEMO_MAXAGE}s" --hot "$HOT"
ORIGIN_PID=$STARTED
wait_http "$ORIGIN/_stats" 30 "$ORIGIN_PID" || fail "demo origin did not answer in 30 s: $(tail -c 600 "$RUN/origin.log")"
start "$HCG" "$RUN/up.log" "$BIN" up --nodes 0 --log-format json --log-level warn \
	--etcd-listen "127.0.0.1:${P[0]}" --etcd-peer "127.0.0.1:${P[1]}" --origin "$ORIGIN"
UP_PID=$STARTED
is_healthy() { grep -q '"health":"true"'; }
wait_http "$ETCD/health" 30 "$UP_PID" is_healthy || fail "etcd did not become healthy in 30 s: $(tail -c 600 "$RUN/up.log")"
log "etcd $ETCD, demo origin $ORIGIN ($DEMO_LATENCY, capacity $DEMO_CAPACITY)"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL_CPU=$(awk -v c="$CPU" -v n="$NODES" 'BEGIN { printf "%g", c * n }')
: >"$RUN/contenders.txt"

# ---------------------------------------------------------------- one contender

# cgcpu: CPU seconds (user + system) used so far by the processes in the
# current contender's cgroups, from /proc/PID/stat (all threads).
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cgcpu() {
	local cg p t=0 v
	for cg in "${C_CGS[@]}"; do
		while read -r p; do
			v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) && t=$((t + ${v:-0}))
		done <"$cg/cgroup.procs"
	done
	awk -v t="$t" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}

# cgthrottled: microseconds the contender's cgroups have spent throttled
# (cpu.stat: throttled_usec in cgroup v2, throttled_time in nanoseconds in
# v1; summed; 0 for a cgroup without a quota).
cgthrottled() {
	local cg t=0 v
	for cg in "${C_CGS[@]}"; do
		v=$(awk '$1 == "throttled_usec" { print $2 } $1 == "throttled_time" { print int($2 / 1000) }' "$cg/cpu.stat" 2>/dev/null) && t=$((t + ${v:-0}))
	done
	echo "$t"
}

# passive_opens: the machine's TCP connections accepted so far (all of
# them: the contender's, its peers' and the harness's own).
passive_opens() { awk '/^Tcp:/ && $6 ~ /^[0-9]+$/ { print $6 }' /proc/net/snmp; }

# sample_cpu FILE GENPID: once a second until GENPID exits, one line of
# CPU used over that second, in cores: the whole machine (from /proc/stat),
# the contender's processes and the load generator. A slow second with the
# machine at 2.0 cores was the machine's; with the contender near its cap,
# the contender's.
sample_cpu() {
	local f=$1 gen=$2 t0=${EPOCHREALTIME/./} w0 w1 m0 m1 c0 c1 g0 g1 s0 s1 h0 h1 q0 q1 v0 v1
	proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
	machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
	softirq_ticks() { awk '/^cpu / { print $8 }' /proc/stat; }
	steal_ticks() { awk '/^cpu / { print $9 }' /proc/stat; }
	# The harness cgroup's processes' CPU ticks (generator, etcd, origin).
	harness_ticks() {
		local p t=0 v
		while read -r p; do
			v=$(proc_ticks "$p") && t=$((t + ${v:-0}))
		done <"$HCG/cgroup.procs"
		echo "$t"
	}
	printf 't_s\tmachine_cores\tcontender_cores\tgenerator_cores\tsoftirq_cores\tharness_other_cores\tthrottled_ms\tsteal_cores\n' >"$f"
	# GENPID is timeout(1); the generator is its child.
	local child=""
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		child=$(pgrep -P "$gen" | head -1) && [[ -n $child ]] && break
		sleep 0.1
	done
	w0=${EPOCHREALTIME/./} m0=$(machine_ticks) c0=$(cgcpu) g0=$(proc_ticks "$child") s0=$(softirq_ticks) h0=$(harness_ticks) q0=$(cgthrottled) v0=$(steal_ticks)
	while kill -0 "$gen" 2>/dev/null; do
		sleep 1
		w1=${EPOCHREALTIME/./} m1=$(machine_ticks) c1=$(cgcpu) g1=$(proc_ticks "$child") s1=$(softirq_ticks) h1=$(harness_ticks) q1=$(cgthrottled) v1=$(steal_ticks)
		[[ $g1 == 0 ]] && break # the generator has exited
		# Each line is the second (from the generator's start) the interval
		# ended in, its figures per second of the interval's own length.
		# softirq is the kernel's network work not charged to any process;
		# harness_other is etcd, the origin and the script's own tools (the
		# harness cgroup less the generator): a slow second on every node at
		# once with the machine busy beyond contender + generator is theirs.
		# throttled is the time the contender's cgroups spent held at their
		# quota in the interval, summed over nodes, in milliseconds: a slow
		# second with throttling was the contender's own CPU. steal is CPU
		# the hypervisor gave to other guests while this one wanted it: a
		# slow second on every node with steal was the host's.
		awk -v t="$(((w1 - t0) / 1000000 - 1))" -v dt="$(((w1 - w0) / 1000))" -v m="$((m1 - m0))" \
			-v c0="$c0" -v c1="$c1" -v g="$((g1 - g0))" -v hz="$CLK_TCK" -v si="$((s1 - s0))" -v h="$((h1 - h0))" -v q="$((q1 - q0))" -v st="$((v1 - v0))" \
			'BEGIN { s = dt / 1000; o = (h - g) / hz / s; if (o < 0) o = 0
				printf "%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\n", t, m / hz / s, (c1 - c0) / s, g / hz / s, si / hz / s, o, q / 1000 / s, st / hz / s }' >>"$f"
		w0=$w1 m0=$m1 c0=$c1 g0=$g1 s0=$s1 h0=$h1 q0=$q1 v0=$v1
	done
}

# grab_nodes ADMINS DELAY PATH EXT: in the background, DELAY s from now,
# GET PATH of each node's admin API (with the contender's $token) into
# $d/n<i>.EXT (run_load's $d).
grab_nodes() {
	local -a a
	local i
	IFS=, read -r -a a <<<"$1"
	for ((i = 0; i < ${#a[@]}; i++)); do
		(sleep "$2"; curl -fsS --max-time 30 -H "Authorization: Bearer $token" "http://${a[i]}$3" -o "$d/n$i.$4") &
	done
}

# run_load NAME LABEL NODES TARGETS ADMINS NOTE: the load, then the
# snapshots. The contender's processes are up and ready.
run_load() {
	local name=$1 label=$2 n=$3 targets=$4 admins=$5 note=$6 d=$RUN/$1
	local png=$CHARTS/flashcrowd-$name.png
	local -a cmd=("$BIN" load --target "$targets" --rate "$RATE" --duration "${TOTAL}s" --crowd "$CROWD"
		--hot "$HOT" --keys "$KEYS" --zipf "$ZIPF" --seed "$SEED" --timeout "$TIMEOUT" --max-inflight "$MAXIN"
		--out-json "$d/load.json" --out-png "$png")
	[[ -n $admins ]] && cmd+=(--admin "$admins")
	# TRACE=1: Go execution traces (go tool trace) of the generator
	# (load.trace) and of each crowdpilot node (n<i>.trace), from 1 s before
	# the crowd for 3 s: whose stall a slow first second is. TRACE_AT=S
	# starts the nodes' traces S s later (the generator's stays at the step).
	[[ ${TRACE:-} == 1 ]] && cmd+=(--out-trace "$d/load.trace")
	printf '%q ' "${cmd[@]}" >"$d/load-cmd.txt"
	local before after rc la0 la1 t0
	before=$(origin_stats)
	la0=$(cut -d' ' -f1-3 /proc/loadavg)
	local cpu0 cpu1
	cpu0=$(cgcpu)
	local po0 po1
	po0=$(passive_opens)
	log "$name: load ${TOTAL}s, $RATE/s, crowd $CROWD on $HOT (load average $la0)"
	t0=$(date +%s%3N)
	# In the background and waited for, so that a trapped signal (Ctrl-C,
	# TERM) interrupts the wait at once and the trap stops everything.
	# Its live progress line goes to the terminal, if there is one.
	local errf=/dev/stderr
	[[ -t 2 ]] || errf=$d/load.err
	bash -c 'echo $$ >"$1/cgroup.procs" || exit 97; shift; exec "$@"' _ "$HCG" \
		timeout --kill-after=10 $((TOTAL + 120)) "${cmd[@]}" >"$d/load.txt" 2>"$errf" &
	local lp=$!
	PIDS+=("$lp")
	sample_cpu "$d/cpu-seconds.tsv" "$lp" &
	local sp=$!
	# NODE_LOG_LEVEL=info (or debug; default warn) is the nodes' --log-level,
	# their logs in n<i>.log.
	# PROFILE=1: a CPU profile of each crowdpilot node over the crowd's first
	# seconds (from PROFILE_AT s after its start, default 0, for PROFILE_S s, default
	# 3), for `go tool pprof`.
	if [[ ${PROFILE:-} == 1 && -n $admins ]]; then
		grab_nodes "$admins" "$((BEFORE + ${PROFILE_AT:-0}))" "/debug/pprof/profile?seconds=${PROFILE_S:-3}" pprof
	fi
	if [[ ${TRACE:-} == 1 && -n $admins ]]; then
		grab_nodes "$admins" "$((BEFORE > 1 ? BEFORE - 1 + ${TRACE_AT:-0} : ${TRACE_AT:-0}))" "/debug/pprof/trace?seconds=3" trace
	fi
	wait "$lp"
	rc=$?
	wait "$sp" 2>/dev/null
	la1=$(cut -d' ' -f1-3 /proc/loadavg)
	cpu1=$(cgcpu)
	po1=$(passive_opens)
	printf '{"start_ms":%s,"loadavg_before":"%s","loadavg_after":"%s","cpu_s_before":%s,"cpu_s_after":%s,"tcp_passive_opens":%s}\n' \
		"$t0" "$la0" "$la1" "$cpu0" "$cpu1" $((po1 - po0)) >"$d/clock.json"
	cat "$d/load.txt" >&2
	local a i=0
	mkdir -p "$d/metrics" "$d/cpustat"
	if [[ -n $admins ]]; then
		IFS=, read -r -a a <<<"$admins"
		for x in "${a[@]}"; do
			curl -fsS --max-time 3 "http://$x/metrics" >"$d/metrics/n$i.txt" 2>/dev/null || rm -f "$d/metrics/n$i.txt"
			i=$((i + 1))
		done
		# The autopilot's decisions with their reasons, and the loads it
		# weighed (any node answers; the leader's view).
		curl -fsS --max-time 3 "http://${a[0]}/api/v1/events" >"$d/events.json" 2>/dev/null || rm -f "$d/events.json"
		curl -fsS --max-time 3 "http://${a[0]}/api/v1/hot" >"$d/hot.json" 2>/dev/null || rm -f "$d/hot.json"
	fi
	for ((i = 0; i < n; i++)); do
		cat "$CGROOT/$name-n$i/cpu.stat" >"$d/cpustat/n$i.txt" 2>/dev/null || rm -f "$d/cpustat/n$i.txt"
	done
	stop_contender
	after=$(origin_stats)
	curl -fsS --max-time 3 "$ORIGIN/_testbed/hot" >"$d/hot-fetches.json" 2>/dev/null || rm -f "$d/hot-fetches.json"
	local status=ok
	if ((rc != 0)) || [[ ! -s $d/load.json ]]; then
		status=failed
		note="load generator exit $rc: $(tail -n 2 "$d/load.err" 2>/dev/null | tr '\n' ' ')"
	fi
	write_meta "$name" "$label" "$status" "$note" "$n" "$png" "$rc" "${before:-null}" "${after:-null}"
}

write_meta() {
	printf '{"name":%s,"label":%s,"status":%s,"note":%s,"nodes":%d,"png":%s,"load_exit":%d,"origin_before":%s,"origin_after":%s}\n' \
		"$(json_str "$1")" "$(json_str "$2")" "$(json_str "$3")" "$(json_str "$4")" "$5" "$(json_str "$6")" "$7" "$8" "$9" \
		>"$RUN/$1/meta.json"
}

# The current contender's processes and cgroups.
C_PIDS=()
C_CGS=()
stop_contender() {
	((${#C_PIDS[@]})) && stop "${C_PIDS[@]}"
	local cg
	for cg in "${C_CGS[@]}"; do rmcg "$cg"; done
	C_PIDS=()
	C_CGS=()
}
new_cg() { # new_cg NAME [QUOTA_US]: makes the cgroup and sets NEWCG to its path
	NEWCG=$CGROOT/$1
	CGROUPS+=("$NEWCG")
	C_CGS+=("$NEWCG")
	mkcg "$NEWCG" "${2:-}"
}

# contender_failed NAME LABEL NODES WHY
contender_failed() {
	log "$1: $4"
	stop_contender
	write_meta "$1" "$2" failed "$4" "$3" "" -1 null null
}

# all_members: the /api/v1/cluster answer on stdin lists every node.
all_members() { (($(grep -o '"addr"' | wc -l) >= NODES)); }

run_crowdpilot() {
	local name=$1 auto=$2 label d=$RUN/$1 i
	label="crowdpilot, autopilot $auto"
	local -a extra=()
	if has_flag autopilot; then
		extra+=("--autopilot=$([[ $auto == on ]] && echo true || echo false)")
	elif [[ $auto == on ]]; then
		log "$name: pending: this crowdpilot node has no --autopilot flag yet"
		write_meta "$name" "$label" pending "this build's \`crowdpilot node\` has no --autopilot flag yet" "$NODES" "" 0 null null
		return 0
	fi
	if [[ $auto == on ]]; then
		local kv
		for kv in replica-target-rps="$AP_TARGET" max-replicas="$AP_MAX" replica-ttl="$AP_TTL" \
			scale-cooldown="$AP_COOLDOWN" scale-in-hold="$AP_HOLD"; do
			if has_flag "${kv%%=*}"; then extra+=("--$kv"); else log "$name: node has no --${kv%%=*}; using its default"; fi
		done
	fi
	# Nodes call each other's admin API (heat reports, replica copies) with
	# the cluster's bearer token: one per contender, shared by its nodes.
	local token
	token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	local -a p
	mapfile -t p < <("$TB" ports $((2 * NODES)))
	((${#p[@]} == 2 * NODES)) || { contender_failed "$name" "$label" "$NODES" "cannot find free ports"; return; }
	local targets="" admins="" cg
	for ((i = 0; i < NODES; i++)); do
		new_cg "$name-n$i" && cg=$NEWCG || { contender_failed "$name" "$label" "$NODES" "cannot create cgroup $name-n$i"; return; }
		start "$cg" "$d/n$i.log" env ${NODE_ENV:-} "$BIN" node --etcd "$ETCD" --cluster "bench-$name-$RUN_ID" --id "n$i" \
			--listen "127.0.0.1:${p[2 * i]}" --admin "127.0.0.1:${p[2 * i + 1]}" --origin "$ORIGIN" \
			--admin-token "$token" --log-format json --log-level "${NODE_LOG_LEVEL:-warn}" "${extra[@]}"
		C_PIDS+=("$STARTED")
		targets+=${targets:+,}http://127.0.0.1:${p[2 * i]}
		admins+=${admins:+,}127.0.0.1:${p[2 * i + 1]}
	done
	for ((i = 0; i < NODES; i++)); do
		wait_http "http://127.0.0.1:${p[2 * i + 1]}/readyz" 30 "${C_PIDS[i]}" ||
			{ contender_failed "$name" "$label" "$NODES" "node n$i not ready in 30 s: $(tail -c 400 "$d/n$i.log")"; return; }
	done
	for ((i = 0; i < NODES; i++)); do
		wait_http "http://127.0.0.1:${p[2 * i + 1]}/api/v1/cluster" 30 "${C_PIDS[i]}" all_members ||
			{ contender_failed "$name" "$label" "$NODES" "node n$i did not see all $NODES members in 30 s"; return; }
	done
	log "$name: $NODES nodes ready (${extra[*]:-no autopilot flags})"
	run_load "$name" "$label" "$NODES" "$targets" "$admins" ""
}

nginx_conf() { # nginx_conf DIR PORT NAME [WORKERS]
	local dir=$1 port=$2 name=$3 workers=${4:-1} reuse="" user group
	# Several workers: one listening socket each (SO_REUSEPORT), so the
	# kernel spreads connections over them instead of one worker taking
	# most of the accepts.
	((workers > 1)) && reuse=" reuseport"
	user=nobody
	group=$(id -gn nobody 2>/dev/null || echo nogroup)
	cat <<EOF
# Generated by bench/testbed.sh: one nginx, $workers worker(s) sharing one
# memory-backed proxy_cache in front of the demo origin.
daemon off;
master_process on;
worker_processes $workers;
user $user $group;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    proxy_cache_path $dir/cache levels=1:2 keys_zone=c:32m max_size=256m inactive=10m use_temp_path=off;
    upstream origin {
        server ${ORIGIN#http://};
        keepalive 64;
    }
    # RFC 9211 Cache-Status, so the load generator counts hits like crowdpilot's.
    map \$upstream_cache_status \$cache_status {
        HIT "nginx; hit";
        STALE "nginx; hit; ttl=-1";
        UPDATING "nginx; hit; ttl=-1";
        REVALIDATED "nginx; fwd=stale; fwd-status=304";
        EXPIRED "nginx; fwd=stale";
        MISS "nginx; fwd=miss";
        BYPASS "nginx; fwd=bypass";
        default "";
    }
    server {
        listen 127.0.0.1:$port backlog=4096$reuse;
        location = /_testbed/ready { return 200 "ready\n"; }
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 2500ms;
            proxy_cache c;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_lock_age 5s;
            proxy_cache_revalidate on;
            proxy_cache_background_update on;
            proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;
            add_header Cache-Status \$cache_status;
            add_header X-Served-By $name;
        }
    }
}
EOF
}

run_nginx() {
	local name=nginx label="nginx proxy_cache" d=$RUN/nginx i
	local -a p
	mapfile -t p < <("$TB" ports "$NODES")
	((${#p[@]} == NODES)) || { contender_failed "$name" "$label" "$NODES" "cannot find free ports"; return; }
	local targets="" cg dir
	for ((i = 0; i < NODES; i++)); do
		dir=$SHM/nginx-n$i
		mkdir -p "$dir/cache" "$dir/tmp" && chown -R nobody "$dir/cache" "$dir/tmp" ||
			{ contender_failed "$name" "$label" "$NODES" "cannot create $dir"; return; }
		nginx_conf "$dir" "${p[i]}" "nginx-n$i" >"$d/nginx-n$i.conf"
		nginx -t -q -c "$d/nginx-n$i.conf" -p "$dir" -e "$dir/error.log" >"$d/nginx-n$i.test" 2>&1 ||
			{ contender_failed "$name" "$label" "$NODES" "nginx -t: $(tail -c 400 "$d/nginx-n$i.test")"; return; }
		new_cg "$name-n$i" && cg=$NEWCG || { contender_failed "$name" "$label" "$NODES" "cannot create cgroup $name-n$i"; return; }
		start "$cg" "$d/nginx-n$i.log" nginx -c "$d/nginx-n$i.conf" -p "$dir" -e "$dir/error.log"
		C_PIDS+=("$STARTED")
		targets+=${targets:+,}http://127.0.0.1:${p[i]}
	done
	for ((i = 0; i < NODES; i++)); do
		wait_http "http://127.0.0.1:${p[i]}/_testbed/ready" 30 "${C_PIDS[i]}" ||
			{ contender_failed "$name" "$label" "$NODES" "nginx-n$i not ready in 30 s: $(tail -c 400 "$SHM/nginx-n$i/error.log" 2>/dev/null)"; return; }
	done
	log "$name: $NODES instances ready"
	run_load "$name" "$label" "$NODES" "$targets" "" ""
	for ((i = 0; i < NODES; i++)); do
		cp "$SHM/nginx-n$i/error.log" "$d/nginx-n$i.error.log" 2>/dev/null
		rm -rf "$SHM/nginx-n$i"
	done
}

# run_nginx1core: one nginx with NODES workers in one cgroup of NODES x
# CPU cores; the client round-robins over NODES copies of its one listener.
run_nginx1core() {
	local name=nginx-1core d=$RUN/nginx-1core dir=$SHM/nginx-1core label
	label="nginx proxy_cache, $NODES workers in one cgroup"
	local -a p
	mapfile -t p < <("$TB" ports 1)
	((${#p[@]} == 1)) || { contender_failed "$name" "$label" 1 "cannot find a free port"; return; }
	mkdir -p "$dir/cache" "$dir/tmp" && chown -R nobody "$dir/cache" "$dir/tmp" ||
		{ contender_failed "$name" "$label" 1 "cannot create $dir"; return; }
	nginx_conf "$dir" "${p[0]}" "nginx-1core" "$NODES" >"$d/nginx.conf"
	nginx -t -q -c "$d/nginx.conf" -p "$dir" -e "$dir/error.log" >"$d/nginx.test" 2>&1 ||
		{ contender_failed "$name" "$label" 1 "nginx -t: $(tail -c 400 "$d/nginx.test")"; return; }
	local cg
	new_cg "$name-n0" "$QUOTA1_US" && cg=$NEWCG || { contender_failed "$name" "$label" 1 "cannot create cgroup $name-n0"; return; }
	start "$cg" "$d/nginx.log" nginx -c "$d/nginx.conf" -p "$dir" -e "$dir/error.log"
	C_PIDS+=("$STARTED")
	wait_http "http://127.0.0.1:${p[0]}/_testbed/ready" 30 "$STARTED" ||
		{ contender_failed "$name" "$label" 1 "nginx not ready in 30 s: $(tail -c 400 "$dir/error.log" 2>/dev/null)"; return; }
	local targets="" i
	for ((i = 0; i < NODES; i++)); do targets+=${targets:+,}http://127.0.0.1:${p[0]}; done
	log "$name: one nginx, $NODES workers, $TOTAL_CPU core(s) in one cgroup, ready"
	run_load "$name" "$label" 1 "$targets" "" ""
	cp "$dir/error.log" "$d/nginx.error.log" 2>/dev/null
	rm -rf "$dir"
}

# ---------------------------------------------------------------- two tenants

# in_harness LOG CMD...: run CMD in the harness cgroup, bounded by a
# timeout, in the background; sets STARTED.
in_harness() {
	local logf=$1
	shift
	bash -c 'echo $$ >"$1/cgroup.procs" || exit 97; shift; exec "$@"' _ "$HCG" \
		timeout --kill-after=10 $((TOTAL + WARM + 120)) "$@" >"$logf" 2>&1 </dev/null &
	STARTED=$!
	PIDS+=("$STARTED")
}

# both_sized: the /api/v1/tenants answer on stdin has a and b at T_MIN nodes.
both_sized() {
	local body
	body=$(tr -d ' \n')
	[[ $(grep -o '"name":"[ab]","size":'"$T_MIN" <<<"$body" | wc -l) -ge 2 ]]
}

# run_tenants: NODES crowdpilot nodes (autopilot and capacity manager on)
# with tenants a and b; a warm-up of both tenants' baseline; then a's crowd
# and b's steady traffic at once, a's and b's node sets polled each second.
run_tenants() {
	local name=tenants d=$RUN/tenants i label="crowdpilot, two tenants"
	mkdir -p "$d/a" "$d/b" "$d/warm"
	cat >"$d/tenants.yaml" <<YAML
# Generated by bench/testbed.sh --tenants.
resolve: [host]
tenants:
  a: {hosts: [a.example], min: $T_MIN}
  b: {hosts: [b.example], min: $T_MIN}
YAML
	local token
	token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	local -a p
	mapfile -t p < <("$TB" ports $((2 * NODES)))
	((${#p[@]} == 2 * NODES)) || fail "cannot find free ports"
	local targets="" admins="" cg
	for ((i = 0; i < NODES; i++)); do
		new_cg "$name-n$i" && cg=$NEWCG || fail "cannot create cgroup $name-n$i"
		start "$cg" "$d/n$i.log" env ${NODE_ENV:-} "$BIN" node --etcd "$ETCD" --cluster "bench-$name-$RUN_ID" --id "n$i" \
			--listen "127.0.0.1:${p[2 * i]}" --admin "127.0.0.1:${p[2 * i + 1]}" --origin "$ORIGIN" \
			--admin-token "$token" --log-format json --log-level "${NODE_LOG_LEVEL:-warn}" \
			--tenants "$d/tenants.yaml" --key-host --allowed-hosts a.example,b.example
		C_PIDS+=("$STARTED")
		targets+=${targets:+,}http://127.0.0.1:${p[2 * i]}
		admins+=${admins:+,}127.0.0.1:${p[2 * i + 1]}
	done
	for ((i = 0; i < NODES; i++)); do
		wait_http "http://127.0.0.1:${p[2 * i + 1]}/readyz" 30 "${C_PIDS[i]}" ||
			fail "node n$i not ready in 30 s: $(tail -c 400 "$d/n$i.log")"
		wait_http "http://127.0.0.1:${p[2 * i + 1]}/api/v1/cluster" 30 "${C_PIDS[i]}" all_members ||
			fail "node n$i did not see all $NODES members in 30 s"
	done
	wait_http "http://127.0.0.1:${p[1]}/api/v1/tenants" 30 "${C_PIDS[0]}" both_sized ||
		fail "tenants a and b not at $T_MIN nodes in 30 s: $(curl -fsS --max-time 3 "http://127.0.0.1:${p[1]}/api/v1/tenants" | head -c 600)"
	log "$name: $NODES nodes ready, tenants a and b at $T_MIN nodes each"

	# Each run its own seed: the measured run must not replay the warm-up's keys.
	local -a common=(--target "$targets" --zipf "$ZIPF" --timeout "$TIMEOUT" --max-inflight "$MAXIN")
	local -a ka=(--keys "$KEYS") kb=(--keys "$B_KEYS")
	if ((WARM > 0)); then
		log "$name: warm-up, ${WARM}s of both tenants' baseline (not measured)"
		local wa wb
		in_harness "$d/warm/a.txt" "$BIN" load "${common[@]}" "${ka[@]}" --host a.example --rate "$RATE" --duration "${WARM}s" --seed $((SEED + 100))
		wa=$STARTED
		in_harness "$d/warm/b.txt" "$BIN" load "${common[@]}" "${kb[@]}" --host b.example --rate "$B_RATE" --duration "${WARM}s" --seed $((SEED + 101))
		wb=$STARTED
		wait "$wa" || fail "warm-up load of a failed: $(tail -c 400 "$d/warm/a.txt")"
		wait "$wb" || fail "warm-up load of b failed: $(tail -c 400 "$d/warm/b.txt")"
	fi
	curl -fsS --max-time 3 "$ORIGIN/_testbed/fetches" >"$d/fetches-before.json" 2>/dev/null || rm -f "$d/fetches-before.json"

	local -a cmda=("$BIN" load "${common[@]}" "${ka[@]}" --host a.example --rate "$RATE" --duration "${TOTAL}s" --crowd "$CROWD" --seed "$SEED"
		--admin "$admins" --out-json "$d/a/load.json")
	local -a cmdb=("$BIN" load "${common[@]}" "${kb[@]}" --host b.example --rate "$B_RATE" --duration "${TOTAL}s"
		--crowd "1x@${BEFORE}s+${HOLD}s" --seed $((SEED + 1)) --out-json "$d/b/load.json")
	printf '%q ' "${cmda[@]}" >"$d/a/load-cmd.txt"
	printf '%q ' "${cmdb[@]}" >"$d/b/load-cmd.txt"
	local la0 la1 ta tb pa pb ppoll ra rb
	la0=$(cut -d' ' -f1-3 /proc/loadavg)
	log "$name: a: ${RATE}/s, crowd $CROWD over its catalogue; b: ${B_RATE}/s steady; ${TOTAL}s (load average $la0)"
	local pids=""
	for ((i = 0; i < NODES; i++)); do pids+=${pids:+,}n$i=${C_PIDS[i]}; done
	in_harness "$d/poll.log" "$TB" tenants-poll --admin "$admins" --duration "$((TOTAL + 3))s" --out "$d/tenants.jsonl" \
		--pids "$pids" --clk-tck "$CLK_TCK" --events-out "$d/capacity-events.json"
	ppoll=$STARTED
	ta=$(date +%s%3N)
	in_harness "$d/a/load.txt" "${cmda[@]}"
	pa=$STARTED
	tb=$(date +%s%3N)
	in_harness "$d/b/load.txt" "${cmdb[@]}"
	pb=$STARTED
	wait "$pa"
	ra=$?
	wait "$pb"
	rb=$?
	wait "$ppoll"
	la1=$(cut -d' ' -f1-3 /proc/loadavg)
	printf '{"start_a_ms":%s,"start_b_ms":%s,"loadavg_before":"%s","loadavg_after":"%s"}\n' "$ta" "$tb" "$la0" "$la1" >"$d/clock.json"
	cat "$d/a/load.txt" "$d/b/load.txt" >&2
	curl -fsS --max-time 3 "$ORIGIN/_testbed/fetches" >"$d/fetches-after.json" 2>/dev/null || rm -f "$d/fetches-after.json"
	local a x
	mkdir -p "$d/metrics"
	IFS=, read -r -a a <<<"$admins"
	i=0
	for x in "${a[@]}"; do
		curl -fsS --max-time 3 "http://$x/metrics" >"$d/metrics/n$i.txt" 2>/dev/null || rm -f "$d/metrics/n$i.txt"
		i=$((i + 1))
	done
	curl -fsS --max-time 3 "http://${a[0]}/api/v1/events" >"$d/events.json" 2>/dev/null || rm -f "$d/events.json"
	curl -fsS --max-time 3 "http://${a[0]}/api/v1/tenants" >"$d/tenants-end.json" 2>/dev/null || rm -f "$d/tenants-end.json"
	stop_contender
	((ra == 0 && rb == 0)) || fail "load generator exit a=$ra b=$rb: $(tail -n 2 "$d/a/load.txt" "$d/b/load.txt" | tr '\n' ' ')"
	LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

	{
		printf 'bench/testbed.sh'
		((${#ORIG_ARGS[@]})) && printf ' %q' "${ORIG_ARGS[@]}"
		echo
	} >"$d/command.txt"
	local cpu_model
	cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	{
		printf 'run\t%s, crowdpilot %s, raw files in `%s/`\n' "$RUN_ID" \
			"$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)" "${d#"$REPO"/}"
		printf 'machine\t%s CPUs (`nproc`), %s, Linux %s, %s\n' "$(nproc)" "${cpu_model:-unknown CPU}" "$(uname -r)" "$(go version 2>/dev/null | awk '{print $3}')"
		printf 'load average (1, 5, 15 min)\t%s at start, %s when the measured run began, %s at its end; the machine is shared with other work\n' "$LOAD_START" "$la0" "$la1"
		printf 'cluster\t%s `crowdpilot node` processes, each in its own cgroup v%s with %s core (quota %s us per %s us), autopilot and capacity manager on (defaults: grow every 3 s at most on the schedule 3, 6, 9, ..., shrink after 30 s cold); `--key-host --allowed-hosts a.example,b.example`; etcd, the demo origin, the two load generators and the poller outside the caps\n' \
			"$NODES" "$CGV" "$CPU" "$QUOTA_US" "$PERIOD_US"
		printf 'tenants\t`resolve: [host]`; a (`a.example`) and b (`b.example`), min %s each, no max but the cluster\n' "$T_MIN"
		printf 'scenario\t%s s warm-up of both baselines (not measured); then, at once: tenant a %s req/s over a Zipf(%s) catalogue of %s keys, a %sx step over the same catalogue from %s s for %s s, and tenant b %s req/s steady over its own catalogue of %s keys (same Zipf); %s s in all; open loop, %s timeout, both round robin over all %s nodes; the warm-up and the run use different key seeds\n' \
			"$WARM" "$RATE" "$ZIPF" "$KEYS" "$MULT" "$BEFORE" "$HOLD" "$B_RATE" "$B_KEYS" "$TOTAL" "$TIMEOUT" "$NODES"
		printf 'origin\tdemo origin, %s per response, %s at a time, queue of 4x that, then 503; responses are `max-age=%s`\n' "$DEMO_LATENCY" "$DEMO_CAPACITY" "$DEMO_MAXAGE"
	} >"$d/facts.txt"
	cat >"$d/notes.md" <<'NOTES'
Known limits of this scenario:

- Both generators spread their requests over all nodes (an L4 balancer in front of the cluster), so every node does entry work for tenant a's crowd (it forwards into a's set), whichever tenants' sets it is in; only the owner work follows the sets. A front end that sends each tenant's users to its own set (`Router.Entry`) is not modelled.
- The sets of a and b are chosen independently by rendezvous hashing, so they can share nodes, and a's growth takes nodes that also serve b: growth spreads a's crowd over more CPU, it does not isolate b. Isolation on labels (`labels:` in the tenants file) is the operator's tool for that and is not used here.
- The autopilot is on: besides the capacity manager, it may lease replicas of a's hottest keys, placed without regard to tenant sets.
- The node sets are one node's view (the first admin that answered), once a second; the load's latencies are per planned send second.
NOTES
	log "writing $(rel "$RESULTS")"
	"$TB" tenants-report --run-dir "$d" --results "$RESULTS" --chart "$CHARTS/tenants.png" --quota "$CPU" ||
		fail "report failed; raw files in $(rel "$d")"
	log "done: $(rel "$RESULTS"), chart $(rel "$CHARTS")/tenants.png"
}

# ---------------------------------------------------------------- run

rel() { echo "${1#"$REPO"/}"; }
if ((TENANTS)); then
	run_tenants
	exit 0
fi
for c in "${WANT[@]}"; do
	mkdir -p "$RUN/$c"
	echo "$c" >>"$RUN/contenders.txt"
	case $c in
	crowdpilot-autopilot) run_crowdpilot "$c" on ;;
	crowdpilot-off) run_crowdpilot "$c" off ;;
	nginx) run_nginx ;;
	nginx-1core) run_nginx1core ;;
	esac
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

{
	printf 'bench/testbed.sh'
	((${#ORIG_ARGS[@]})) && printf ' %q' "${ORIG_ARGS[@]}"
	echo
} >"$RUN/command.txt"
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
	printf 'run\t%s, crowdpilot %s, raw files in `%s/`\n' "$RUN_ID" \
		"$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)" "$(rel "$RUN")"
	printf 'machine\t%s CPUs (`nproc`), %s, Linux %s, %s\n' "$(nproc)" "${CPU_MODEL:-unknown CPU}" "$(uname -r)" "$(go version 2>/dev/null | awk '{print $3}')"
	printf 'load average (1, 5, 15 min)\t%s at start, %s at end; the machine is shared with other work, so treat small differences as noise\n' "$LOAD_START" "$LOAD_END"
	printf 'caps\tcgroup v%s, each node (or nginx instance) in its own cgroup with %s core (quota %s us per %s us), nginx-1core in one cgroup of %s core(s) (quota %s us): %s core(s) per contender; etcd, the demo origin and the load generator run outside the caps, in one cgroup without a quota; CPU weight (`--priority %s`) %s\n' \
		"$CGV" "$CPU" "$QUOTA_US" "$PERIOD_US" "$TOTAL_CPU" "$QUOTA1_US" "$TOTAL_CPU" "$PRIORITY" \
		"$( ((PRIORITY > 1)) && echo "$PRIORITY x the default for the harness, $PRIORITY x the default x its cores for each contender cgroup, against other work on the machine" || echo "the default")"
	printf 'scenario\t%s req/s baseline over a Zipf(%s) catalogue of %s keys; a %sx step on `%s` from %s s for %s s; then baseline for %s s (%s s in all); open loop, %s timeout, round robin over the %s targets\n' \
		"$RATE" "$ZIPF" "$KEYS" "$MULT" "$HOT" "$BEFORE" "$HOLD" "$AFTER" "$TOTAL" "$TIMEOUT" "$NODES"
	printf 'origin\tdemo origin, %s per response, %s at a time, queue of 4x that, then 503; responses are `max-age=%s` (the TTL below)\n' "$DEMO_LATENCY" "$DEMO_CAPACITY" "$DEMO_MAXAGE"
	printf 'autopilot\t'
	if has_flag autopilot; then
		printf -- '`--replica-target-rps %s --max-replicas %s --replica-ttl %s --scale-cooldown %s --scale-in-hold %s` (those the node accepts)\n' \
			"$AP_TARGET" "$AP_MAX" "$AP_TTL" "$AP_COOLDOWN" "$AP_HOLD"
	else
		printf 'not in this build yet: the crowdpilot-autopilot row is pending, and crowdpilot-off runs the nodes as they are (no autopilot exists)\n'
	fi
	printf 'nginx\t%s, `worker_processes 1` per instance (nginx-1core: one instance, `worker_processes %s`, `listen ... reuseport`, one shared cache), `proxy_cache` in `/dev/shm`, `proxy_cache_lock on`, `proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504`, `proxy_cache_background_update on`, `proxy_cache_revalidate on`, upstream keepalive\n' \
		"$(nginx -v 2>&1 | sed 's|nginx version: ||')" "$NODES"
} >"$RUN/facts.txt"
cat >"$RUN/notes.md" <<'EOF'
Known limits of this comparison:

- The nginx instances do not share a cache: each fetches every object it is asked for on its own, so with N instances the origin sees up to N fetches per object per TTL (and the catalogue's long tail is fetched N times). That is what N independent nginx caches behind a round-robin balancer do; crowdpilot's nodes share one cache by owning keys.
- nginx-1core is one nginx whose workers share one cache (a shared-memory zone), in one cgroup of the same total CPU: the origin sees one fetch per object per TTL from it, and its workers take whatever CPU share the load needs (no per-instance cap). Its N targets are the one listener repeated, so the client's request pattern is the same as for the others.
- nginx's `proxy_cache_lock` makes a request that waits for another's fill re-check the lock on a 500 ms timer (fixed in nginx's `ngx_http_file_cache.c`), so requests that arrive while an object is first fetched wait about 500 ms; nginx latencies near 500 ms come from there. Once an object is cached, `proxy_cache_use_stale updating` and `proxy_cache_background_update` keep refreshes off the request path.
- Contenders run one after the other on the same machine, not at the same time, against the same origin process; caches start cold for each. Only the per-node CPU is capped: the load generator, etcd and the origin compete with the nodes (and with anything else on the machine) for the remaining cores, which the generator lag column and the load average above show.
- Per-second figures have one-second resolution; the replica count is what the generator scraped at the end of each second.
EOF

log "writing $(rel "$RESULTS")"
"$TB" report --run-dir "$RUN" --results "$RESULTS" --objective "$OBJECTIVE" --ttl "${DEMO_MAXAGE}s" ||
	fail "report failed; raw files in $(rel "$RUN")"
log "done: $(rel "$RESULTS"), charts in $(rel "$CHARTS")/flashcrowd-*.png"
