#!/usr/bin/env bash
# SIGTERM at the last step of an epoch, then --resume: train_log.jsonl has the
# same epoch lines with the same train_loss as an uninterrupted run, and the
# log shows no nan. With one step per epoch every step is an epoch's last, so
# wherever the signal lands, the stop comes at the end of an epoch.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir train-stop-epoch-end)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
settings=(-c "$config" --set output_dir="$work" --set train.epochs=3 --set train.log_every=1
    --set train.threads=2 --set train.batch_size=128)

"$APIARY" train "${settings[@]}" --set run_name=whole > /dev/null 2> "$work/whole.err" ||
    { cat "$work/whole.err"; fail "uninterrupted run failed"; }
grep -q " 1 steps per epoch" "$work/whole.err" ||
    { grep "model:" "$work/whole.err"; fail "batch 128 does not give one step per epoch"; }

# The signal goes out as training starts, so it lands during the first step.
outcome=$(python3 "$APIARY_SOURCE_DIR/tests/tools/kill_at_random.py" --seed 1 --signal TERM \
    --pattern "model:" --min-events 1 --events 1 --max-delay 0 --log "$work/cut.err" -- \
    "$APIARY" train "${settings[@]}" --set run_name=cut)
grep -q "exited with 6" <<< "$outcome" ||
    { cat "$work/cut.err"; fail "the interrupted run: $outcome, expected exit code 6"; }
grep -q "stopped by a signal at epoch [0-9]* step [0-9]*" "$work/cut.err" ||
    { cat "$work/cut.err"; fail "the interrupted run does not say where it stopped"; }

"$APIARY" train "${settings[@]}" --set run_name=cut --resume > /dev/null \
    2> "$work/resumed.err" || { cat "$work/resumed.err"; fail "resumed run failed"; }
grep -q "resuming from" "$work/resumed.err" || fail "resume did not load the checkpoint"
! grep -E "epoch [0-9]+/[0-9]+ " "$work/resumed.err" | grep -qw nan ||
    { grep -E "epoch [0-9]+/[0-9]+ " "$work/resumed.err"; fail "an epoch line shows nan"; }

expected=$(epoch_losses "$work/whole/train_log.jsonl")
actual=$(epoch_losses "$work/cut/train_log.jsonl")
[ "$(wc -l <<< "$actual")" -eq 3 ] ||
    fail "the resumed run logged $(wc -l <<< "$actual") epoch lines, expected 3: $actual"
[ "$actual" = "$expected" ] ||
    fail "epoch train losses differ: resumed [$actual], uninterrupted [$expected]"
cmp -s "$work/whole/model.safetensors" "$work/cut/model.safetensors" ||
    fail "resumed weights differ from the uninterrupted run"
echo "PASS"
