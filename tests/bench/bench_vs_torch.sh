#!/usr/bin/env bash
# apiary against PyTorch on the configs/local.yaml network and the wasp-trap
# images: training and scoring images/s, decoding, each oneDNN op, and the
# resident memory over epochs. A benchmark to run by hand, not a test.
#
#     tests/bench/setup                        # once: PyTorch into .venv-bench/
#     tests/bench/bench_vs_torch.sh train      # training images/s and the ratio
#     tests/bench/bench_vs_torch.sh score      # inference images/s and the ratio
#     tests/bench/bench_vs_torch.sh decode     # decode and resize images/s
#     tests/bench/bench_vs_torch.sh ops        # each op: ms, GFLOP/s, share of peak
#     tests/bench/bench_vs_torch.sh memory     # resident memory after each epoch
#     tests/bench/bench_vs_torch.sh all        # all of them, plus JSON and SVG output
#
# Options after the benchmark name go to bench_compare.py, for example
# --reps 7, --threads 1, --compile (adds torch.compile), --device cuda,
# --json FILE, --svg FILE. Environment: BUILD_DIR (default build/, built with
# scripts/build), APIARY_DATA_DIR (default ../shared/data).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
data=${APIARY_DATA_DIR:-$root/../shared/data}
python=$root/.venv-bench/bin/python
benchmark=${1:?usage: bench_vs_torch.sh train|score|decode|ops|memory|all [OPTIONS]}
shift

[ -x "$python" ] || { echo "no $python; run tests/bench/setup first" >&2; exit 2; }
[ -f "$build/libapiary_core.a" ] || { echo "no $build/libapiary_core.a; run scripts/build" >&2; exit 2; }
[ -d "$data/wasp-trap" ] || { echo "no wasp-trap data under $data" >&2; exit 2; }
export APIARY_DATA_DIR=$data

device=cpu
for ((i = 1; i <= $#; i++)); do
    [ "${!i}" = --device ] && { j=$((i + 1)); device=${!j}; }
done
if [ "$device" = cuda ]; then
    exec "$root/tests/bench/bench_gpu.sh" "$benchmark" "$@"
fi

# bench_apiary links against the library and the libraries of the apiary target.
link=$(awk '/^build apiary:/ { found = 1 }
            found && /LINK_LIBRARIES/ { sub(/^ *LINK_LIBRARIES = /, ""); print; exit }' \
    "$build/build.ninja")
[ -n "$link" ] || { echo "no link line for apiary in $build/build.ninja (a Ninja build)" >&2; exit 2; }
(cd "$build" && cc -std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -fopenmp -I"$root" \
    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE "$root/tests/bench/bench_apiary.c" \
    "$root/tests/bench/bench_ops.c" -o bench_apiary $link)

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-torch-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$build/bench_apiary" dump --config "$root/configs/local.yaml" --out "$work/images.bin" > /dev/null

echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $("$python" -c 'import torch; print("torch", torch.__version__)'), oneDNN $(dpkg-query -W -f '${Version}' libdnnl2 2>/dev/null || echo unknown)"
"$python" "$root/tests/bench/bench_compare.py" "$benchmark" --apiary "$build/bench_apiary" \
    --torch-script "$root/tests/bench/bench_torch.py" --config "$root/configs/local.yaml" \
    --data "$work/images.bin" --image-root "$data/wasp-trap" "$@"
