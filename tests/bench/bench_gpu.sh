#!/usr/bin/env bash
# GPU variant of the training comparison (bench_vs_torch.sh train --device cuda):
# apiary train with train.device=cuda against the same PyTorch network on the
# GPU. Exits 77 with a message when there is no CUDA device, apiary was built
# without CUDA, or the PyTorch in .venv-bench has no CUDA.
#
#     tests/bench/bench_vs_torch.sh train --device cuda [--reps N]
#
# apiary's figure is the images/s of its epochs after the first (the first
# includes warm-up), read from train_log.jsonl; PyTorch's comes from
# bench_torch.py train --device cuda after its warm-up steps.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
data=${APIARY_DATA_DIR:-$root/../shared/data}
python=$root/.venv-bench/bin/python
benchmark=$1
shift
reps=3
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2; shift 2 ;;
    *) shift ;;
    esac
done
skip() { echo "skipped: $*"; exit 77; }

[ "$benchmark" = train ] || skip "only the train benchmark has a GPU variant"
command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 || skip "no CUDA device"
"$python" "$root/tests/bench/bench_torch.py" check --device cuda > /dev/null ||
    skip "the PyTorch in .venv-bench has no CUDA"
export APIARY_DATA_DIR=$data

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-gpu-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$build/apiary" train -c "$root/configs/local.yaml" --set output_dir="$work/probe" \
    --set train.device=cuda --set train.epochs=1 > "$work/probe.log" 2>&1 ||
    skip "apiary train --set train.device=cuda failed: $(tail -1 "$work/probe.log")"

# The dump for PyTorch comes from bench_vs_torch.sh's bench_apiary, built on the CPU path.
"$build/bench_apiary" dump --config "$root/configs/local.yaml" --out "$work/images.bin" > /dev/null

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for rep in $(seq "$reps"); do
    rm -rf "$work/runs"
    "$build/apiary" train -c "$root/configs/local.yaml" --set output_dir="$work/runs" \
        --set train.device=cuda --set train.epochs=5 > "$work/train.log" 2>&1
    apiary_ips=$("$python" - "$work/runs/local/train_log.jsonl" << 'EOF'
import json, statistics, sys
epochs = [json.loads(line) for line in open(sys.argv[1]) if '"epoch"' in line]
rates = [e["images_per_second"] for e in epochs if e.get("event") == "epoch"][1:]
print(f"{statistics.median(rates):.1f}")
EOF
)
    torch_ips=$("$python" "$root/tests/bench/bench_torch.py" train --device cuda \
        --data "$work/images.bin" --channels-last --steps 50 |
        "$python" -c 'import json, sys; print(f"{json.loads(sys.stdin.read())["images_per_second"]:.1f}")')
    echo "rep $rep: apiary $apiary_ips images/s, torch channels-last $torch_ips images/s" \
        "(ratio $("$python" -c "print(f'{$apiary_ips / $torch_ips:.2f}')"))"
done
