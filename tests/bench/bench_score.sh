#!/usr/bin/env bash
# Batch-scoring throughput of apiary score: images/s of the configs/local.yaml
# model over the wasp-trap images, repeated to 2,016 images (7 links to the
# folder). A benchmark to run by hand, not a test.
#
#     tests/bench/bench_score.sh [APIARY_BINARY]
#
# The binary defaults to build/apiary, the data to APIARY_DATA_DIR or
# ../shared/data, the thread count to THREADS or every core, and the number of
# timed runs to RUNS (3). Throughput depends on the architecture and input
# size, not on the weights, so the model trains for one epoch only.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
apiary=${1:-${APIARY:-$root/build/apiary}}
data=${APIARY_DATA_DIR:-$root/../shared/data}
threads=${THREADS:-$(nproc)}
runs=${RUNS:-3}
[ -x "$apiary" ] || { echo "no apiary binary at $apiary; build it or pass its path" >&2; exit 2; }
[ -d "$data/wasp-trap/images" ] || { echo "no wasp-trap images under $data" >&2; exit 2; }
export APIARY_DATA_DIR="$data"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-score-XXXXXX")
trap 'rm -rf "$work"' EXIT
common=(-c "$root/configs/local.yaml" --set output_dir="$work/runs"
    --set registry.uri="$work/registry" --set score.threads="$threads")

# A registered model with the local architecture; a gate failure is overridden.
code=0
"$apiary" run "${common[@]}" --set train.epochs=1 > "$work/run.log" 2>&1 || code=$?
if [ "$code" -eq 3 ]; then
    "$apiary" promote "${common[@]}" --set train.epochs=1 --force \
        --reason "benchmark model" >> "$work/run.log" 2>&1
elif [ "$code" -ne 0 ]; then
    cat "$work/run.log" >&2
    exit "$code"
fi

mkdir -p "$work/input"
for copy in 1 2 3 4 5 6 7; do
    ln -s "$data/wasp-trap/images" "$work/input/copy-$copy"
done

echo "apiary score over $(find -L "$work/input" -type f | wc -l) wasp-trap images," \
    "configs/local.yaml model, $threads threads, $(nproc) cores"
for run in $(seq 1 "$runs"); do
    "$apiary" score "${common[@]}" --input "$work/input" --output "$work/scores-$run" \
        > "$work/score-$run.log" 2>&1 || { cat "$work/score-$run.log" >&2; exit 1; }
    python3 - "$work/scores-$run/v1/summary.json" "$run" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))["this_run"]
print(f"run {sys.argv[2]}: {run['scored']} images in {run['seconds']:.2f} s, "
      f"{run['images_per_second']:.1f} images/s with {run['threads']} threads")
EOF
    grep -o "decoding [0-9.]* s, inference [0-9.]* s" "$work/score-$run.log" | sed 's/^/  /'
done
