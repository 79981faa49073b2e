#!/usr/bin/env bash
# Cluster benchmarks, side by side in one run: the same fan-out load on
#   bayeuxd-1    one bayeuxd, no backplane (the single node as it always was);
#   bayeuxd-1r   one bayeuxd on Redis (what the log costs on one node);
#   bayeuxd-2    two bayeuxd on Redis, the publisher on one, the subscribers on the other;
#   bayeuxd-3    three bayeuxd on Redis, the publisher on the first, subscribers on all three;
#   faye-redis-2 two Faye processes on faye-redis, publisher on one, subscribers on the other.
# For each: deliveries/s, latency, loss, duplicates, the CPU of every server process and of
# Redis per delivered message, and the Redis commands per published and per delivered message
# (INFO commandstats before and after). Then the takeover times: from kill -9 of the node
# serving a subscriber to its next delivery, and of a drain, over long-polling.
#
# Every process is pinned: servers and Redis on CPU $SERVER_CPU, the generator on $GEN_CPU.
# One JSON line per run goes to $OUT/results.jsonl; tables go to stdout and $OUT/*.md.
#
# Knobs (environment): DURATION=10 RUNS=1 SCENARIOS="fanout-lp fanout-ws"
#   SETUPS="bayeuxd-1 bayeuxd-1r bayeuxd-2 bayeuxd-3 faye-redis-2" SERVER_CPU=0 GEN_CPU=1
#   OUT=bench/results/cluster-<timestamp>
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
RUNS=${RUNS:-1}
SCENARIOS=${SCENARIOS:-"fanout-lp fanout-ws"}
SETUPS=${SETUPS:-"bayeuxd-1 bayeuxd-1r bayeuxd-2 bayeuxd-3 faye-redis-2"}
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
TIMEOUT_MS=20000
OUT=${OUT:-bench/results/cluster-$(date +%Y%m%d-%H%M%S)}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { echo "cluster: $*" >&2; }

for tool in taskset redis-server redis-cli; do
    command -v "$tool" >/dev/null || { log "$tool is needed (apt-get install util-linux redis-server)"; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building bayeuxd and bayeux-bench (release)"
cargo build --release -q -p bayeuxd -p bayeux-bench
BAYEUXD=$TARGET_DIR/release/bayeuxd
BENCH=$TARGET_DIR/release/bayeux-bench
log "installing the peers (bench/peers)"
(cd bench/peers && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; }) >&2

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "redis: $(redis-server --version | cut -d' ' -f3)"
    echo "node: $(node --version)"
    echo "bayeuxd: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

PIDS=()          # every process of the current set-up
SERVER_PIDS=()   # the Bayeux servers among them
URLS=()          # their endpoints
REDIS_PID=
REDIS_PORT=

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() {
    REDIS_PORT=$(free_port)
    local dir=$OUT/redis-$REDIS_PORT
    mkdir -p "$dir"
    taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
        --appendonly yes --dir "$dir" >"$dir.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    log "redis did not start"; return 1
}

# start_node KIND NAME: a bayeuxd (KIND bayeuxd: alone, bayeuxd-r: on the Redis) or a
# faye-redis process; appends to SERVER_PIDS and URLS.
start_node() {
    local kind=$1 name=$2 logf=$OUT/$2.log
    case $kind in
        bayeuxd)
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$BAYEUXD" --bind 127.0.0.1:0 \
                --timeout "$TIMEOUT_MS" >"$logf" 2>&1 & ;;
        bayeuxd-r)
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$BAYEUXD" --bind 127.0.0.1:0 \
                --timeout "$TIMEOUT_MS" --backplane "redis://127.0.0.1:$REDIS_PORT" \
                --node-name "$name" --drain-window 200 >"$logf" 2>&1 & ;;
        faye-redis)
            taskset -c "$SERVER_CPU" node bench/peers/faye-redis-server.mjs 0 "$TIMEOUT_MS" \
                "$REDIS_PORT" >"$logf" 2>&1 & ;;
    esac
    local pid=$!
    PIDS+=("$pid")
    SERVER_PIDS+=("$pid")
    local url=
    for _ in $(seq 100); do
        url=$(grep -om1 'listening on http://[^ ]*' "$logf" | cut -d' ' -f3 || true)
        [ -n "$url" ] && { URLS+=("$url"); return 0; }
        sleep 0.1
    done
    log "$name did not start:"; cat "$logf" >&2; return 1
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=(); SERVER_PIDS=(); URLS=(); REDIS_PID=; REDIS_PORT=
}
trap stop_all EXIT

start_setup() {
    case $1 in
        bayeuxd-1) start_node bayeuxd a ;;
        bayeuxd-1r) start_redis && start_node bayeuxd-r a ;;
        bayeuxd-2) start_redis && start_node bayeuxd-r a && start_node bayeuxd-r b ;;
        bayeuxd-3) start_redis && start_node bayeuxd-r a && start_node bayeuxd-r b && start_node bayeuxd-r c ;;
        faye-redis-2) start_redis && start_node faye-redis f1 && start_node faye-redis f2 ;;
        *) log "unknown set-up $1"; return 1 ;;
    esac
}

# The subscribers' endpoints: the other node(s) when there are several.
subscriber_urls() {
    case $1 in
        bayeuxd-2|faye-redis-2) echo "${URLS[1]}" ;;
        bayeuxd-3) (IFS=,; echo "${URLS[*]}") ;;
        *) echo "${URLS[0]}" ;;
    esac
}

# Redis commands since the last call, as "NAME=calls,..." (empty without Redis).
redis_calls() {
    [ -n "$REDIS_PORT" ] || return 0
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1=\2/p' | paste -sd, -
}

cpu_ticks() { # utime+stime of a pid, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

scenario_args() {
    case $1 in
        # As in compare.sh: 100 subscribers on one channel, 1 000 msg/s: 100 000 deliveries/s.
        fanout-lp) echo "fanout --transport long-polling --subscribers 100 --channels 1 --publishers 4 --rate 1000 --duration $DURATION" ;;
        # 1 000 websocket clients on one channel, 100 msg/s: 100 000 deliveries/s.
        fanout-ws) echo "fanout --transport websocket --subscribers 1000 --channels 1 --publishers 1 --rate 100 --duration $DURATION" ;;
        *) log "unknown scenario $1"; return 1 ;;
    esac
}

for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario")
    for setup in $SETUPS; do
        for run in $(seq "$RUNS"); do
            log "$scenario on $setup (run $run/$RUNS)"
            if ! start_setup "$setup"; then
                echo "{\"scenario\":\"$scenario\",\"label\":\"$setup\",\"error\":\"did not start\"}" >>"$RESULTS"
                stop_all; continue
            fi
            sleep 0.5
            before=$(redis_calls)
            redis_before=0
            [ -n "$REDIS_PID" ] && redis_before=$(cpu_ticks "$REDIS_PID")
            started=$(date +%s.%N)
            pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
            # shellcheck disable=SC2086 # args is a word list on purpose
            line=$(taskset -c "$GEN_CPU" "$BENCH" $args --url "${URLS[0]}" --publish-url "${URLS[0]}" \
                --subscriber-urls "$(subscriber_urls "$setup")" --server-pid "$pids" \
                --label "$setup" --scenario "$scenario") || { log "$scenario on $setup failed"; line=; }
            ended=$(date +%s.%N)
            after=$(redis_calls)
            redis_cpu=null
            if [ -n "$REDIS_PID" ]; then
                redis_cpu=$(awk -v a="$redis_before" -v b="$(cpu_ticks "$REDIS_PID")" -v t0="$started" -v t1="$ended" \
                    'BEGIN { printf "%.1f", (b - a) * 100 / 100 / (t1 - t0) }')
            fi
            if [ -n "$line" ]; then
                python3 - "$line" "$before" "$after" "$redis_cpu" "${#SERVER_PIDS[@]}" >>"$RESULTS" <<'PY'
import json, sys
line, before, after, redis_cpu, nodes = sys.argv[1:6]
result = json.loads(line)
parse = lambda s: dict(kv.split("=") for kv in s.split(",") if "=" in kv)
b, a = parse(before), parse(after)
calls = {k: int(a[k]) - int(b.get(k, 0)) for k in a if int(a[k]) - int(b.get(k, 0)) > 0}
result["nodes"] = int(nodes)
result["redis_calls"] = calls
result["redis_cpu_pct"] = None if redis_cpu == "null" else float(redis_cpu)
print(json.dumps(result))
PY
            fi
            stop_all
        done
    done
done

# Takeover times over long-polling: a subscriber with ack on node a, a publisher on node b at
# 200 msg/s; node a is killed (or drained); the time from that to the subscriber's next
# delivery.
log "takeover times"
for how in kill drain; do
    for run in $(seq "$RUNS"); do
        start_redis && start_node bayeuxd-r a && start_node bayeuxd-r b || { stop_all; continue; }
        sleep 0.5
        node bench/takeover.mjs "$how" "${URLS[0]}" "${URLS[1]}" "${SERVER_PIDS[0]}" >>"$OUT/takeover.jsonl" \
            || log "takeover ($how) failed"
        stop_all
    done
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 bench/cluster_report.py "$RESULTS" "$OUT/takeover.jsonl" | tee "$OUT/table.md"
log "results in $OUT"
