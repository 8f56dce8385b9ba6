#!/usr/bin/env bash
# Gateway benchmark: throughput (wrk) and added latency of the bodywork
# gateway versus a direct connection, with nginx as the reference reverse
# proxy, all on loopback. See bench/README-gateway.md.
#
# Usage: bash bench/gateway.sh
# Environment (all optional):
#   UPSTREAM=HOST:PORT   benchmark an already running upstream (e.g. the Flask
#                        scoring example) instead of the built-in trivial one
#   UPSTREAM_PATH=/p     request path on the upstream          (default /)
#   BODY='{"a": 1}'      send JSON POSTs with this body         (default GET)
#   CONNECTIONS=16  DURATION=10  ROUNDS=3  WRK_THREADS=2  LATENCY_REQUESTS=10000 (per round; 0 skips latency)
#   LATENCY_BLOCKS=5     each round's latency requests in this many blocks,
#                        the targets alternating block by block: where the
#                        kernel places the three processes swings a p50 by
#                        10-30 µs, so one long block per target is a lottery
#   BENCH_THREADS=N      tokio worker threads of the built-in upstream
#   LOAD_CPUS=0          pin wrk, the latency client, our gateway and nginx to
#                        these CPUs (taskset list), and the built-in upstream to
#   UPSTREAM_CPUS=1      these; start an external UPSTREAM with `taskset -c 1`
#                        yourself. Keeps the load generator and proxies off the
#                        upstream's core, as separate machines would.
#   SKIP_BUILD=1         reuse the last release build
#   JSON=1               also print one JSON line last on stdout: per-round
#                        req/s and the p50s (read by bench/loop_speed.py)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONNECTIONS="${CONNECTIONS:-16}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
WRK_THREADS="${WRK_THREADS:-2}"
LATENCY_REQUESTS="${LATENCY_REQUESTS:-10000}"
LATENCY_BLOCKS="${LATENCY_BLOCKS:-5}"
UPSTREAM_PATH="${UPSTREAM_PATH:-/}"
BODY="${BODY:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/examples"

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $2 with apt-get" >&2
        apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
    fi
    command -v "$1" >/dev/null 2>&1 || { echo "error: $1 not found; install the Debian package $2" >&2; exit 1; }
}
need wrk wrk
need nginx nginx
need python3 python3

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet -p bodywork-gateway --example bench_upstream --example bench_gateway --example bench_latency)
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

on() { # CPUS COMMAND... -> COMMAND, pinned to CPUS when given; execs, so call it
    # only where a subshell runs it (`&`, `$(...)`, `<(...)`)
    local cpus="$1"
    shift
    if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

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

# The upstream.
if [ -n "${UPSTREAM:-}" ]; then
    UPSTREAM_ADDR="$UPSTREAM"
else
    UPSTREAM_ADDR="127.0.0.1:$(free_port)"
    on "${UPSTREAM_CPUS:-}" "$BIN/bench_upstream" "$UPSTREAM_ADDR" 2>"$WORK/upstream.log" &
    PIDS+=($!)
fi
wait_port "${UPSTREAM_ADDR##*:}"

# Our gateway, with a static directory: service bench/up -> the upstream.
GATEWAY_PORT="$(free_port)"
on "${LOAD_CPUS:-}" "$BIN/bench_gateway" "127.0.0.1:$GATEWAY_PORT" bench up "$UPSTREAM_ADDR" 2>"$WORK/gateway.log" &
PIDS+=($!)

# nginx as a plain keep-alive reverse proxy, passing on the same
# X-Forwarded-For/-Proto/-Host headers as our gateway, so that the upstream
# gets the same request from both (in fixed CPU placements they cost nginx
# 1-2 µs of added p50).
NGINX_PORT="$(free_port)"
mkdir -p "$WORK/nginx"/{client_body,proxy,fastcgi,uwsgi,scgi}
chmod -R a+rwx "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream bench_upstream { server $UPSTREAM_ADDR; keepalive 64; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
        }
    }
}
EOF
on "${LOAD_CPUS:-}" nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
wait_port "$GATEWAY_PORT"
wait_port "$NGINX_PORT"

declare -A URL=(
    [direct]="http://$UPSTREAM_ADDR$UPSTREAM_PATH"
    [gateway]="http://127.0.0.1:$GATEWAY_PORT/api/v1/namespaces/bench/services/up/proxy$UPSTREAM_PATH"
    [nginx]="http://127.0.0.1:$NGINX_PORT$UPSTREAM_PATH"
)
TARGETS=(direct gateway nginx)

WRK_ARGS=()
if [ -n "$BODY" ]; then
    cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = [==[$BODY]==]
wrk.headers["Content-Type"] = "application/json"
EOF
    WRK_ARGS=(-s "$WORK/post.lua")
fi

# Every target must answer 2xx before we time it.
for t in "${TARGETS[@]}"; do
    if [ -n "$BODY" ]; then
        code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data "$BODY" "${URL[$t]}")"
    else
        code="$(curl -s -o /dev/null -w '%{http_code}' "${URL[$t]}")"
    fi
    case "$code" in 2??) ;; *) echo "error: $t answered $code at ${URL[$t]}" >&2; exit 1 ;; esac
done

rps() { # TARGET SECONDS -> requests per second (non-2xx answers make it fail)
    local out
    out="$(on "${LOAD_CPUS:-}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$2s" "${WRK_ARGS[@]}" "${URL[$1]}")"
    if grep -q "Non-2xx" <<<"$out"; then echo "error: $1 answered non-2xx under load" >&2; echo "$out" >&2; exit 1; fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "upstream $UPSTREAM_ADDR$UPSTREAM_PATH ${BODY:+(POST $BODY)}; ${LOAD_CPUS:+load and proxies on CPU $LOAD_CPUS; }$CONNECTIONS connections, $ROUNDS rounds of ${DURATION}s, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A SAMPLES
for t in "${TARGETS[@]}"; do rps "$t" 2 >/dev/null; done # warm-up: pools, caches, page faults
for round in $(seq 1 "$ROUNDS"); do
    # Interleaved rounds, so a neighbour's load spike hits every target alike;
    # the order rotates each round so no target always runs first.
    for i in 0 1 2; do
        t="${TARGETS[$(( (i + round) % 3 ))]}"
        SAMPLES[$t]+="$(rps "$t" "$DURATION") "
    done
    echo "round $round: direct $(awk '{print $NF}' <<<"${SAMPLES[direct]}") gateway $(awk '{print $NF}' <<<"${SAMPLES[gateway]}") nginx $(awk '{print $NF}' <<<"${SAMPLES[nginx]}") req/s" >&2
done

declare -A RPS P50 P90 L50 L90
for t in "${TARGETS[@]}"; do
    RPS[$t]="$(tr ' ' '\n' <<<"${SAMPLES[$t]}" | grep . | median)"
done
BLOCK_REQUESTS=$(( LATENCY_REQUESTS / LATENCY_BLOCKS ))
[ "$BLOCK_REQUESTS" -ge 500 ] || BLOCK_REQUESTS=500
block=0
for round in $(seq 1 "$ROUNDS"); do
    # Latency in short blocks, the targets alternating and their order
    # rotating block by block; the median of the blocks' percentiles is
    # reported, and the blocks line up across targets (for paired differences).
    for _ in $(seq 1 "$LATENCY_BLOCKS"); do
        block=$((block + 1))
        for i in 0 1 2; do
            t="${TARGETS[$(( (i + block) % 3 ))]}"
            # LATENCY_REQUESTS=0 skips latency (e.g. upstreams without keep-alive,
            # such as Flask's development server, which the latency client needs).
            if [ "$LATENCY_REQUESTS" = 0 ]; then p50=0; p90=0; else
            read -r p50 p90 _ < <(on "${LOAD_CPUS:-}" "$BIN/bench_latency" "${URL[$t]}" "$BLOCK_REQUESTS" ${BODY:+"$BODY"})
            fi
            L50[$t]+="$p50 "
            L90[$t]+="$p90 "
        done
        [ "$LATENCY_REQUESTS" = 0 ] && break
    done
done
for t in "${TARGETS[@]}"; do
    P50[$t]="$(tr ' ' '\n' <<<"${L50[$t]}" | grep . | median)"
    P90[$t]="$(tr ' ' '\n' <<<"${L90[$t]}" | grep . | median)"
done

printf '\n%-8s %12s %9s %9s %9s %13s\n' target "req/s" "vs direct" "p50 µs" "p90 µs" "added p50 µs"
for t in "${TARGETS[@]}"; do
    awk -v t="$t" -v r="${RPS[$t]}" -v d="${RPS[direct]}" -v p50="${P50[$t]}" -v p90="${P90[$t]}" -v d50="${P50[direct]}" \
        'BEGIN { printf "%-8s %12.0f %9.3f %9.1f %9.1f %13.1f\n", t, r, r / d, p50, p90, p50 - d50 }'
done
# Per-round ratios (each proxy against the direct run of the same round):
# their median and quartiles say how much of a difference is noise.
ratios() { # NUMERATOR DENOMINATOR -> "median (q1-q3)" of the per-round ratios
    paste <(tr ' ' '\n' <<<"${SAMPLES[$1]}" | grep .) <(tr ' ' '\n' <<<"${SAMPLES[$2]}" | grep .) |
        awk '{print $1 / $2}' | sort -g |
        awk '{a[NR]=$1} END {q1=a[int((NR+3)/4)]; q3=a[int((3*NR+3)/4)]; printf "%.3f (quartiles %.3f-%.3f)", a[int((NR+1)/2)], q1, q3}'
}
echo
echo "per-round ratios over $ROUNDS rounds: gateway/direct $(ratios gateway direct); nginx/direct $(ratios nginx direct); gateway/nginx $(ratios gateway nginx)"
awk -v g="${RPS[gateway]}" -v n="${RPS[nginx]}" -v d="${RPS[direct]}" -v g50="${P50[gateway]}" -v d50="${P50[direct]}" 'BEGIN {
    printf "medians: gateway/direct %.3f (target >= 0.9 trivial, >= 0.97 Flask); nginx/direct %.3f; gateway/nginx %.3f\n", g / d, n / d, g / n
    printf "added latency p50 %.1f µs (target <= 100)\n", g50 - d50
}'
if [ -n "${JSON:-}" ]; then
    # One machine-readable line last on stdout (for bench/loop_speed.py):
    # per-round req/s samples, the median p50s in µs, and every latency
    # block's p50 ("p50_rounds_us", aligned across targets).
    nums() { tr ' ' '\n' <<<"$1" | grep . | paste -sd, -; }
    printf '{"rps": {"direct": [%s], "gateway": [%s], "nginx": [%s]}, "p50_us": {"direct": %s, "gateway": %s, "nginx": %s}, "p50_rounds_us": {"direct": [%s], "gateway": [%s], "nginx": [%s]}}\n' \
        "$(nums "${SAMPLES[direct]}")" "$(nums "${SAMPLES[gateway]}")" "$(nums "${SAMPLES[nginx]}")" \
        "${P50[direct]}" "${P50[gateway]}" "${P50[nginx]}" \
        "$(nums "${L50[direct]}")" "$(nums "${L50[gateway]}")" "$(nums "${L50[nginx]}")"
fi
