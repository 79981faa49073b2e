#!/usr/bin/env bash
# Runs the same load scenarios against bayeuxd and the Bayeux servers installed from npm (Faye
# and the official CometD Node server) and prints a markdown table with the ratios
# bayeuxd/peer. See docs/performance.md for what is measured and for one run's results.
#
# Every scenario gets a fresh server pinned to CPU $SERVER_CPU and the generator (bayeux-bench)
# pinned to CPU $GEN_CPU, both on 127.0.0.1. One JSON line per run goes to $OUT/results.jsonl;
# the table goes to stdout and $OUT/table.md.
#
# Knobs (environment):
#   DURATION=10      seconds of publishing per fan-out run (echo runs half as long)
#   SESSIONS=10000   idle sessions per idle run
#   RUNS=1           runs per scenario and server; the table shows the median of each metric
#   SERVERS="bayeuxd faye cometd"   which servers, the first one is the reference; add
#                    `bayeuxd-base` with BAYEUXD_BASELINE=/path/to/an/older/bayeuxd to compare
#                    two builds side by side in one run; add `floor` (bayeux-floor: actix-web
#                    holding requests and doing nothing else) for the idle scenarios;
#                    `bayeuxd:FLAG=VALUE[,FLAG=VALUE]` runs bayeuxd with those flags (e.g.
#                    `bayeuxd:--flush-window-us=1000`), to compare settings in one run
#   SCENARIOS="..."  a subset of: fanout-lp topology-lp fanout-ws fanout-ws-1k stalled-ws idle-lp
#                    idle-ws echo-lp echo-ws
#   SERVER_CPU=0 GEN_CPU=1
#   OUT=bench/results/<timestamp>
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
SESSIONS=${SESSIONS:-10000}
RUNS=${RUNS:-1}
SERVERS=${SERVERS:-"bayeuxd faye cometd"}
SCENARIOS=${SCENARIOS:-"fanout-lp topology-lp fanout-ws fanout-ws-1k stalled-ws idle-lp idle-ws echo-lp echo-ws"}
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
TIMEOUT_MS=20000
OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { echo "compare: $*" >&2; }

if ! command -v taskset >/dev/null; then
    log "installing util-linux for taskset"
    apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
    log "only $(nproc) CPU: server and generator will share it"
    GEN_CPU=$SERVER_CPU
fi
# 10 000 sessions need as many sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building bayeuxd and bayeux-bench (release)"
cargo build --release -q -p bayeuxd -p bayeux-bench
BAYEUXD=$TARGET_DIR/release/bayeuxd
BENCH=$TARGET_DIR/release/bayeux-bench
FLOOR=$TARGET_DIR/release/bayeux-floor

log "installing the peers (bench/peers)"
(cd bench/peers && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; }) >&2

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "node: $(node --version)"
    echo "bayeuxd: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

SERVER_PID=
SERVER_URL=

# start_server NAME: starts a fresh server on a free port, sets SERVER_PID and SERVER_URL.
start_server() {
    local name=$1 logf=$OUT/$1.log
    case $name in
        bayeuxd)
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$BAYEUXD" --bind 127.0.0.1:0 \
                --timeout "$TIMEOUT_MS" >"$logf" 2>&1 &
            ;;
        bayeuxd:*)
            local flags=${name#bayeuxd:}
            # shellcheck disable=SC2086 # the flags are a word list on purpose
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$BAYEUXD" --bind 127.0.0.1:0 \
                --timeout "$TIMEOUT_MS" ${flags//,/ } >"$logf" 2>&1 &
            ;;
        bayeuxd-base)
            RUST_LOG=warn taskset -c "$SERVER_CPU" "${BAYEUXD_BASELINE:?set BAYEUXD_BASELINE}" \
                --bind 127.0.0.1:0 --timeout "$TIMEOUT_MS" >"$logf" 2>&1 &
            ;;
        floor)
            taskset -c "$SERVER_CPU" "$FLOOR" 127.0.0.1:0 >"$logf" 2>&1 &
            ;;
        faye)
            taskset -c "$SERVER_CPU" node bench/peers/faye-server.mjs 0 "$TIMEOUT_MS" >"$logf" 2>&1 &
            ;;
        cometd)
            taskset -c "$SERVER_CPU" node bench/peers/cometd-server.mjs 0 "$TIMEOUT_MS" >"$logf" 2>&1 &
            ;;
        *) log "unknown server $name"; return 1 ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        SERVER_URL=$(grep -om1 'listening on http://[^ ]*' "$logf" | cut -d' ' -f3 || true)
        [ -n "$SERVER_URL" ] && return 0
        sleep 0.1
    done
    log "$name did not start:"; cat "$logf" >&2
    stop_server
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop_server EXIT

# The generator arguments of each scenario.
scenario_args() {
    local echo_s
    echo_s=$(awk "BEGIN { print $DURATION / 2 }")
    case $1 in
        # 100 subscribers on one channel, 1 000 msg/s published: 100 000 deliveries/s.
        fanout-lp) echo "fanout --transport long-polling --subscribers 100 --channels 1 --publishers 4 --rate 1000 --duration $DURATION" ;;
        # CometD's benchmark topology: 1 000 clients, 100 rooms, 10 rooms per client (100
        # members per room), batches of 10 messages of 50 bytes every 10 ms: 100 000 deliveries/s.
        topology-lp) echo "fanout --transport long-polling --subscribers 1000 --channels 100 --rooms 10 --publishers 1 --batch 10 --rate 1000 --size 50 --duration $DURATION" ;;
        # 1 000 websocket clients on one channel, 100 msg/s published: 100 000 deliveries/s.
        fanout-ws) echo "fanout --transport websocket --subscribers 1000 --channels 1 --publishers 1 --rate 100 --duration $DURATION" ;;
        # A slow consumer: 100 websocket subscribers of 1 KB messages at 100 000 deliveries/s,
        # without (fanout-ws-1k) and with (stalled-ws) 5 more subscribers that never read;
        # compare the live subscribers' latency between the two rows.
        fanout-ws-1k) echo "fanout --transport websocket --subscribers 100 --channels 1 --publishers 1 --rate 1000 --size 1000 --duration $DURATION" ;;
        stalled-ws) echo "fanout --transport websocket --subscribers 100 --channels 1 --publishers 1 --rate 1000 --size 1000 --stalled 5 --duration $DURATION" ;;
        idle-lp) echo "idle --transport long-polling --sessions $SESSIONS --duration 2" ;;
        idle-ws) echo "idle --transport websocket --sessions $SESSIONS --duration 2" ;;
        echo-lp) echo "echo --transport long-polling --clients 1 --duration $echo_s" ;;
        echo-ws) echo "echo --transport websocket --clients 1 --duration $echo_s" ;;
        *) log "unknown scenario $1"; return 1 ;;
    esac
}

for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario")
    for server in $SERVERS; do
        for run in $(seq "$RUNS"); do
            if [ "$server" = cometd ] && [[ $scenario == *-ws ]]; then
                # cometd-nodejs-server has no websocket transport (its README: "WebSocket not
                # (yet) supported"; an upgrade gets HTTP 400). Recorded as n/a.
                echo "{\"scenario\":\"$scenario\",\"label\":\"$server\",\"mode\":\"${args%% *}\",\"error\":\"no websocket transport\"}" >>"$RESULTS"
                continue
            fi
            log "$scenario on $server (run $run/$RUNS)"
            start_server "$server" || {
                echo "{\"scenario\":\"$scenario\",\"label\":\"$server\",\"error\":\"server did not start\"}" >>"$RESULTS"
                continue
            }
            # shellcheck disable=SC2086 # args is a word list on purpose
            taskset -c "$GEN_CPU" "$BENCH" $args --url "$SERVER_URL" --server-pid "$SERVER_PID" \
                --label "$server" --scenario "$scenario" >>"$RESULTS" || log "$scenario on $server failed"
            stop_server
        done
    done
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$BENCH" report "$RESULTS" | tee "$OUT/table.md"
log "results in $OUT"
