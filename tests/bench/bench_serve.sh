#!/usr/bin/env bash
# Benchmark of apiary serve (not a test): trains the CI model into a
# temporary folder, starts the server on loopback and posts one real JPEG
# to /v1/predict with wrk for BENCH_SECONDS (default 10) per round. Prints
# throughput, p50/p90/p99 latency and the server's resident memory before
# and after each round. Memory that keeps growing from round to round
# points at a leak.
#
#     tests/bench/bench_serve.sh [BUILD_DIR]
#
# Environment: APIARY (the binary, default BUILD_DIR/apiary with BUILD_DIR
# default build), APIARY_DATA_DIR (images, default ../shared/data),
# BENCH_SECONDS, BENCH_CONNECTIONS (default 16), BENCH_ROUNDS (default 2),
# and --set overrides for the server in BENCH_SET, for example
# BENCH_SET="serve.threads=8 serve.batch_size=16". Installs the Debian
# package wrk when it is missing.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${1:-$source_dir/build}
apiary=${APIARY:-$build_dir/apiary}
data=${APIARY_DATA_DIR:-$source_dir/../shared/data}
seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-16}
rounds=${BENCH_ROUNDS:-2}
[ -x "$apiary" ] || { echo "no apiary binary at $apiary; build first (scripts/build)" >&2; exit 2; }
[ -d "$data/wasp-trap/images" ] || { echo "no images in $data/wasp-trap/images" >&2; exit 2; }

if ! command -v wrk > /dev/null; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    echo "installing wrk"
    "${as_root[@]}" apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q wrk > /dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-serve-XXXXXX")
server_pid=""
cleanup() {
    [ -z "$server_pid" ] || kill -KILL "$server_pid" 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export APIARY_DATA_DIR="$data"
config="$source_dir/configs/ci.yaml"
common=(--set output_dir="$work" --set registry.uri="$work/registry")

echo "training the CI model"
"$apiary" run -c "$config" "${common[@]}" --set run_name=bench > "$work/run.log" 2>&1 ||
    [ $? -eq 3 ] || { cat "$work/run.log"; exit 1; }
"$apiary" promote -c "$config" "${common[@]}" --set run_name=bench --force \
    --reason "benchmark model" > /dev/null 2>> "$work/run.log"

overrides=()
for setting in ${BENCH_SET:-}; do
    overrides+=(--set "$setting")
done
: > "$work/serve.log" # the background job below creates it only once it runs
"$apiary" serve -c "$config" "${common[@]}" --set serve.port=0 --set serve.max_concurrent=1024 \
    "${overrides[@]}" 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 150); do
    port=$(sed -n 's/.*listening on .* port \([0-9]*\) .*/\1/p' "$work/serve.log" | sed -n 1p)
    curl -sf "http://127.0.0.1:${port:-1}/v2/health/ready" > /dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null || { cat "$work/serve.log"; exit 1; }

image=$(ls -S "$data"/wasp-trap/images/*.jpg | sed -n '50p')
cat > "$work/post.lua" << 'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/jpeg"
local file = assert(io.open(os.getenv("BENCH_IMAGE"), "rb"))
wrk.body = file:read("*all")
file:close()
EOF

rss_kib() {
    awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"
}

echo "server: $(sed -n 's/.*serve: listening on //p' "$work/serve.log")"
echo "image: $(basename "$image") ($(stat -c %s "$image") bytes)"
echo "load: wrk, 2 threads, $connections connections, ${seconds} s per round, $(nproc) CPUs"
echo "resident memory before the first round: $(rss_kib) KiB"
for round in $(seq "$rounds"); do
    BENCH_IMAGE="$image" wrk -t 2 -c "$connections" -d "${seconds}s" --latency \
        -s "$work/post.lua" "http://127.0.0.1:$port/v1/predict" > "$work/wrk.txt"
    requests=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
    p90=$(awk '$1 == "90%" {print $2}' "$work/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
    errors=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
    socket=$(grep -o 'Socket errors.*' "$work/wrk.txt" || true)
    echo "round $round: $requests requests/s, latency p50 $p50 p90 $p90 p99 $p99," \
        "non-2xx ${errors:-0}${socket:+, $socket}; resident memory after: $(rss_kib) KiB"
done
curl -s "http://127.0.0.1:$port/metrics" | awk '/^apiary_inference_batch_images_(sum|count)/ {
    value[$1] = $2 } END { if (value["apiary_inference_batch_images_count"] > 0)
    printf "mean batch: %.2f images per forward pass\n",
        value["apiary_inference_batch_images_sum"] / value["apiary_inference_batch_images_count"] }'
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
