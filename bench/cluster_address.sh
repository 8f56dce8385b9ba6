#!/usr/bin/env bash
# Cluster-address benchmark: what a service's cluster
# address (the TCP balancer, which now looks at the first bytes of every
# connection for an HTTP/1.x head to check its Host) adds to a request,
# against talking to the replica directly, all on loopback.
#
# Two client patterns, each with bench_latency (sequential requests, p50/p90
# of round trips, after a 10 % warm-up):
#   keep-alive   one connection for every request: the first bytes are
#                looked at once, then bytes are only piped
#   new-conn     a new connection per request (BENCH_NEW_CONNECTION=1), its
#                connect timed with the request: every request's head is
#                read, parsed and checked
# Rounds are interleaved (direct, cluster; then cluster, direct; ...), so a
# neighbour's load spike hits every target alike; the table gives the median
# of the rounds' percentiles. With BASELINE=DIR a second cluster address runs
# DIR's bench_cluster (e.g. built at the commit before a change), as target
# "baseline", interleaved with the others: before/after in one run.
#
# Usage: bash bench/cluster_address.sh
# Environment (all optional):
#   ROUNDS=5  LATENCY_REQUESTS=10000 (per round and pattern)
#   BIN=DIR        take bench_upstream, bench_cluster and bench_latency from DIR
#                  (e.g. a copy built at an earlier commit) instead of building
#   SKIP_BUILD=1   reuse the last release build
#   BASELINE=DIR   also measure DIR/bench_cluster, as target "baseline"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
LATENCY_REQUESTS="${LATENCY_REQUESTS:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${BIN:-}" ]; then
    BIN="$CARGO_TARGET_DIR/release/examples"
    if [ -z "${SKIP_BUILD:-}" ]; then
        (cd "$ROOT" && cargo build --release --quiet -p bodywork-gateway --example bench_upstream --example bench_cluster --example bench_latency)
    fi
fi

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "error: nothing listens on 127.0.0.1:$1" >&2
    exit 1
}

UPSTREAM_PORT="$(free_port)"
"$BIN/bench_upstream" "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
PIDS+=($!)
CLUSTER_PORT="$(free_port)"
"$BIN/bench_cluster" "127.0.0.1:$CLUSTER_PORT" "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"
wait_port "$CLUSTER_PORT"
TARGETS=(direct cluster)
if [ -n "${BASELINE:-}" ]; then
    BASELINE_PORT="$(free_port)"
    "$BASELINE/bench_cluster" "127.0.0.1:$BASELINE_PORT" "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
    PIDS+=($!)
    wait_port "$BASELINE_PORT"
    TARGETS+=(baseline)
fi

declare -A URL=(
    [direct]="http://127.0.0.1:$UPSTREAM_PORT/"
    [cluster]="http://127.0.0.1:$CLUSTER_PORT/"
    [baseline]="http://127.0.0.1:${BASELINE_PORT:-0}/"
)
PATTERNS=(keep-alive new-conn)

echo "bench_cluster at $BIN; $ROUNDS rounds of $LATENCY_REQUESTS requests per pattern; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A L50 L90
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!TARGETS[@]}"; do
        t="${TARGETS[$(( (i + round) % ${#TARGETS[@]} ))]}"
        for p in "${PATTERNS[@]}"; do
            new=0
            [ "$p" = new-conn ] && new=1
            read -r p50 p90 _ < <(BENCH_NEW_CONNECTION=$new "$BIN/bench_latency" "${URL[$t]}" "$LATENCY_REQUESTS")
            L50[$t/$p]+="$p50 "
            L90[$t/$p]+="$p90 "
        done
    done
    line="round $round, p50 µs:"
    for p in "${PATTERNS[@]}"; do
        for t in "${TARGETS[@]}"; do line+=" $p/$t $(awk '{print $NF}' <<<"${L50[$t/$p]}")"; done
    done
    echo "$line" >&2
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\n%-10s %-8s %9s %9s %13s\n' pattern target "p50 µs" "p90 µs" "added p50 µs"
for p in "${PATTERNS[@]}"; do
    d50="$(median <<<"${L50[direct/$p]}")"
    for t in "${TARGETS[@]}"; do
        m50="$(median <<<"${L50[$t/$p]}")"
        m90="$(median <<<"${L90[$t/$p]}")"
        awk -v p="$p" -v t="$t" -v a="$m50" -v b="$m90" -v d="$d50" \
            'BEGIN { printf "%-10s %-8s %9.1f %9.1f %13.1f\n", p, t, a, b, a - d }'
    done
done
