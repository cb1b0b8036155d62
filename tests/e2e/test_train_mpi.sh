#!/usr/bin/env bash
# Data-parallel training with MPI on the CPU, two processes on this machine:
# - the job reaches the weights of one process that splits each global batch
#   into the same two micro-batches (train.accumulation_steps 2);
# - the processes train disjoint shards, and only rank 0 logs and writes;
# - a batch that does not split over the processes, a resume with another
#   process count and train.device=cuda without CUDA fail with clear errors;
# - an interrupted job resumes bit-identically;
# - a hung or killed process ends the whole job instead of hanging it.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir train-mpi)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"

# The launcher checks of apiary train need no MPI.
if "$APIARY" train -c "$config" --set output_dir="$work" --set run_name=cuda \
    --set train.device=cuda 2> "$work/cuda.err"; then
    fail "train.device=cuda succeeded on a CPU-only trainer"
fi
grep -q "train.device is cuda" "$work/cuda.err" || { cat "$work/cuda.err"; fail "no clear error for train.device=cuda"; }

command -v mpirun > /dev/null || skip "mpirun is not installed (openmpi-bin)"
# mpirun refuses to start as root without these, and CI containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(timeout -s KILL 120 mpirun --oversubscribe -np 2)

# The wasp-trap labels with some cells blanked (unknown), so the micro-batches
# of a step hold different numbers of known targets and the loss must be
# normalised by the global count.
dataset="$work/dataset"
mkdir -p "$dataset"
ln -s "$data/wasp-trap/images" "$dataset/images"
awk -F, -v OFS=, 'NR > 1 && NR % 3 == 0 { $3 = "" } NR > 1 && NR % 7 == 0 { $2 = "" } { print }' \
    "$data/wasp-trap/labels.csv" > "$dataset/labels.csv"
# One OpenMP thread per process: oneDNN's results depend on the thread count.
settings=(--set output_dir="$work" --set data.root="$dataset" --set train.threads=1
    --set train.batch_size=16 --set train.epochs=2)

descendants() {
    local pid
    for pid in $(pgrep -P "$1"); do
        echo "$pid"
        descendants "$pid"
    done
}

# The pid of the apiary process of MPI rank $2 below process $1.
rank_pid() {
    local pid
    for pid in $(descendants "$1"); do
        if tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
            echo "$pid"
            return
        fi
    done
}

# Wait up to $3 seconds until file $1 contains pattern $2.
wait_for_line() {
    local i
    for i in $(seq 1 $(($3 * 50))); do
        grep -q "$2" "$1" 2> /dev/null && return 0
        sleep 0.02
    done
    return 1
}

# --- A global batch that does not split over the processes -------------------
set +e
"${mpi[@]}" "$APIARY" train -c "$config" "${settings[@]}" --set run_name=uneven \
    --set train.batch_size=15 > /dev/null 2> "$work/uneven.err"
code=$?
set -e
grep -q "built without MPI" "$work/uneven.err" && skip "apiary was built without MPI"
[ "$code" -eq 4 ] || { cat "$work/uneven.err"; fail "uneven batch exited with $code, expected 4"; }
grep -q "train.batch_size 15 does not split evenly into 2 micro-batches" "$work/uneven.err" ||
    fail "no clear error for a batch that does not split over 2 processes"
[ ! -e "$work/uneven" ] || fail "the rejected job created its run folder"

# --- Two processes against one with the same micro-batches -------------------
"${mpi[@]}" "$APIARY" train -c "$config" "${settings[@]}" --set run_name=job \
    --set log_level=debug > /dev/null 2> "$work/job.err" || { cat "$work/job.err"; fail "the MPI job failed"; }
"$APIARY" train -c "$config" "${settings[@]}" --set run_name=accumulated \
    --set train.accumulation_steps=2 > /dev/null 2> "$work/accumulated.err" ||
    { cat "$work/accumulated.err"; fail "the accumulated run failed"; }
"$APIARY" train -c "$config" "${settings[@]}" --set run_name=whole > /dev/null 2> "$work/whole.err" ||
    { cat "$work/whole.err"; fail "the single-batch run failed"; }

# Trained tensors only: the batch-norm running statistics differ by design
# (the job averages its processes' after every step, one process updates them
# after every micro-batch). Both runs make the same float operations, except
# that the all-reduce adds the two processes' gradient sums where one process
# adds the second micro-batch to the first, and for two operands a + b = b + a
# exactly, so the weights should be bit-identical; 1e-6 of a tensor's largest
# value allows for an MPI library that reduces in another precision. The
# control run normalises batch norm over all 16 images and must differ by far
# more, which shows that the comparison can fail.
python3 - "$work/job/model.safetensors" "$work/accumulated/model.safetensors" \
    "$work/whole/model.safetensors" <<'PY' || fail "the MPI job did not reach the weights of one process"
import json, struct, sys

def load(path):
    data = open(path, "rb").read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    body = data[8 + size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or name.endswith(("running_mean", "running_var")):
            continue
        start, end = info["data_offsets"]
        tensors[name] = struct.unpack(f"<{(end - start) // 4}f", body[start:end])
    return tensors

def worst_difference(a, b):
    assert a.keys() == b.keys(), "the models have different tensors"
    worst = 0.0
    for name in a:
        scale = max(max(abs(v) for v in a[name]), 1e-30)
        worst = max(worst, max(abs(x - y) for x, y in zip(a[name], b[name])) / scale)
    return worst

job, accumulated, whole = (load(path) for path in sys.argv[1:4])
same = worst_difference(job, accumulated)
control = worst_difference(job, whole)
print(f"2 processes vs accumulation 2: {same:.3g}; vs one batch of 16: {control:.3g}")
assert same <= 1e-6, f"relative difference {same} exceeds 1e-6"
assert control > 1e-3, f"the control run differs by only {control}"
PY

# --- Shards, logs and files --------------------------------------------------
train_images=$(grep -c ",train$" "$work/job/split.csv")
expected=$((train_images / 16 * 16))
for epoch in 1 2; do
    grep -q "epoch $epoch shards: 2 processes trained $expected distinct images, $((expected / 2)) of them on rank 0" \
        "$work/job.err" || { grep shards "$work/job.err"; fail "epoch $epoch: the shards were not disjoint halves of $expected images"; }
done
if grep -E "rank=1 (DEBUG|INFO)" "$work/job.err"; then
    fail "rank 1 logged below warning level"
fi
[ "$(wc -l < "$work/job/train_log.jsonl")" -eq "$(wc -l < "$work/accumulated/train_log.jsonl")" ] ||
    fail "train_log.jsonl of the job has a different number of lines than one process writes"
grep -q '"world_size": *"2"' "$work/job/checkpoint.safetensors" ||
    fail "the checkpoint does not record 2 processes"

# Rank 1 under strace: it may read the run folder but never create, write,
# rename or remove anything in it.
if strace -f -qq -o /dev/null true 2> /dev/null; then
    run=(train -c "$config" "${settings[@]}" --set run_name=traced --set train.epochs=1)
    timeout -s KILL 120 mpirun --oversubscribe -np 1 "$APIARY" "${run[@]}" : \
        -np 1 strace -f -qq -e trace=%file -o "$work/rank1.trace" "$APIARY" "${run[@]}" \
        > /dev/null 2> "$work/traced.err" || { cat "$work/traced.err"; fail "the traced job failed"; }
    [ -s "$work/traced/model.safetensors" ] || fail "rank 0 of the traced job wrote no model"
    grep -q "$work/traced/split.csv" "$work/rank1.trace" || fail "strace did not see rank 1 read the split"
    if grep -F "$work/traced" "$work/rank1.trace" |
        grep -E 'O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|^[0-9]+ +(rename|unlink|rmdir|link|symlink|truncate|creat)[a-z0-9]*\(|^[0-9]+ +mkdir(at)?\(.*= 0$'; then
        fail "rank 1 wrote to the run folder"
    fi
else
    echo "note: strace cannot trace here; skipped the check that rank 1 writes nothing"
fi

# mpirun with one process trains exactly like a plain run.
timeout -s KILL 120 mpirun -np 1 "$APIARY" train -c "$config" "${settings[@]}" --set run_name=one \
    > /dev/null 2> "$work/one.err" || { cat "$work/one.err"; fail "the one-process job failed"; }
cmp -s "$work/one/model.safetensors" "$work/whole/model.safetensors" ||
    fail "mpirun -np 1 gave other weights than a plain run"

# --- Interrupt and resume ----------------------------------------------------
long=("${settings[@]}" --set train.epochs=16 --set train.log_every=1)
"${mpi[@]}" "$APIARY" train -c "$config" "${long[@]}" --set run_name=uncut > /dev/null 2> "$work/uncut.err" ||
    { cat "$work/uncut.err"; fail "the uninterrupted job failed"; }
"${mpi[@]}" "$APIARY" train -c "$config" "${long[@]}" --set run_name=cut > /dev/null 2> "$work/cut.err" &
job=$!
wait_for_line "$work/cut.err" "epoch 3 step" 60 || { cat "$work/cut.err"; fail "the job did not reach epoch 3"; }
# Kubernetes sends SIGTERM to every pod, so every process gets one.
kill -TERM $(rank_pid "$job" 0) $(rank_pid "$job" 1)
set +e
wait "$job"
code=$?
set -e
[ "$code" -eq 6 ] || { cat "$work/cut.err"; fail "the interrupted job exited with $code, expected 6"; }
[ ! -e "$work/cut/complete.json" ] || fail "the interrupted job was marked complete"
grep -q "mpirun -np 2 apiary train -c $config .*--resume" "$work/cut.err" ||
    { cat "$work/cut.err"; fail "the hint to continue the job does not repeat mpirun -np 2"; }

set +e
"$APIARY" train -c "$config" "${long[@]}" --set run_name=cut --resume 2> "$work/one-resume.err"
code=$?
set -e
[ "$code" -eq 2 ] || { cat "$work/one-resume.err"; fail "one process resuming a job of two exited with $code, expected 2"; }
grep -q "written by a job of 2 processes, but this job has 1" "$work/one-resume.err" ||
    { cat "$work/one-resume.err"; fail "no clear error for a resume with another process count"; }
"${mpi[@]}" "$APIARY" train -c "$config" "${long[@]}" --set run_name=cut --resume > /dev/null \
    2> "$work/resumed.err" || { cat "$work/resumed.err"; fail "the resumed job failed"; }
grep -q "resuming from" "$work/resumed.err" || fail "the resumed job did not load the checkpoint"
cmp -s "$work/uncut/model.safetensors" "$work/cut/model.safetensors" ||
    fail "the resumed job's weights differ from the uninterrupted job's"

# --- A hung process and a killed process end the job -------------------------
# Rank 1 is stopped (SIGSTOP), so only the collective timeout can notice: the
# other rank must give up after train.collective_timeout and abort the job.
for fault in STOP KILL; do
    start=$(date +%s)
    "${mpi[@]}" "$APIARY" train -c "$config" "${long[@]}" --set run_name="fault-$fault" \
        --set train.epochs=1000 --set train.collective_timeout=3 > /dev/null 2> "$work/$fault.err" &
    job=$!
    wait_for_line "$work/$fault.err" "epoch 1 step" 60 || { cat "$work/$fault.err"; fail "the $fault job did not start training"; }
    victim=$(rank_pid "$job" 1)
    [ -n "$victim" ] || fail "rank 1 of the $fault job not found"
    kill -"$fault" "$victim"
    set +e
    wait "$job"
    code=$?
    set -e
    seconds=$(($(date +%s) - start))
    [ "$code" -ne 0 ] || fail "the job with a $fault'ed rank exited with 0"
    [ "$seconds" -lt 60 ] || fail "the job with a $fault'ed rank took $seconds s to end"
    # mpirun may return while the continued rank 1 is still in its own
    # abort, so it gets 10 s to end. A zombie (state Z) has ended; it waits
    # only for a parent to reap it.
    for _ in $(seq 1 100); do
        state=$(ps -o stat= -p "$victim" || true)
        [ -n "$state" ] && [ "${state:0:1}" != Z ] || break
        sleep 0.1
    done
    if [ -n "$state" ] && [ "${state:0:1}" != Z ]; then
        kill -KILL "$victim"
        fail "rank 1 outlived its job by 10 s (state $state)"
    fi
done
grep -E "rank=0 ERROR .*rank 1 (never reached it|reached it but stopped responding)" "$work/STOP.err" ||
    { cat "$work/STOP.err"; fail "rank 0 did not name the hung rank 1"; }
grep -q "timed out after 3 s" "$work/STOP.err" || fail "no timeout reported for the hung rank"
echo "PASS"
