#!/usr/bin/env bash
# SIGTERM during training saves a checkpoint and exits with code 6; --resume
# then finishes with weights bit-identical to an uninterrupted run and the
# same epoch losses in train_log.jsonl. A resume without its checkpoint or
# with changed settings logs what happened.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir train-resume)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
settings=(--set output_dir="$work" --set train.epochs=4 --set train.log_every=1)

"$APIARY" train -c "$config" "${settings[@]}" --set run_name=whole > /dev/null 2> "$work/whole.err" ||
    { cat "$work/whole.err"; fail "uninterrupted run failed"; }

# Stop it as it logs its first step of the second epoch. The signal follows
# the log line, not a timer, because the CI config trains an epoch in well
# under a second.
outcome=$(python3 "$APIARY_SOURCE_DIR/tests/tools/kill_at_random.py" --seed 1 --signal TERM \
    --pattern "epoch 2 step" --min-events 1 --events 1 --max-delay 0 --log "$work/cut.err" -- \
    "$APIARY" train -c "$config" "${settings[@]}" --set run_name=cut)
grep -q "exited with 6" <<< "$outcome" ||
    { cat "$work/cut.err"; fail "the interrupted run: $outcome, expected exit code 6"; }
[ -s "$work/cut/checkpoint.safetensors" ] || fail "no checkpoint after SIGTERM"
[ ! -e "$work/cut/complete.json" ] || fail "an interrupted run was marked complete"

if "$APIARY" train -c "$config" "${settings[@]}" --set run_name=cut 2> "$work/again.err"; then
    fail "training over a started run without --resume succeeded"
fi
"$APIARY" train -c "$config" "${settings[@]}" --set run_name=cut --resume > /dev/null \
    2> "$work/resumed.err" || { cat "$work/resumed.err"; fail "resumed run failed"; }
grep -q "resuming from" "$work/resumed.err" || fail "resume did not load the checkpoint"
cmp -s "$work/whole/model.safetensors" "$work/cut/model.safetensors" ||
    fail "resumed weights differ from the uninterrupted run"
# The epoch stopped in the middle reports the mean loss over all its steps.
expected=$(epoch_losses "$work/whole/train_log.jsonl")
actual=$(epoch_losses "$work/cut/train_log.jsonl")
[ "$actual" = "$expected" ] ||
    fail "epoch train losses differ: resumed [$actual], uninterrupted [$expected]"

# A resume whose checkpoint is gone starts from the first epoch with a
# warning, and moves the earlier log aside, each time to a new name, instead of
# appending to it.
"$APIARY" train -c "$config" "${settings[@]}" --set run_name=lost --set train.epochs=1 \
    > /dev/null 2>&1 || fail "short run failed"
for attempt in 1 2; do
    rm "$work/lost/complete.json" "$work/lost/checkpoint.safetensors"
    cp "$work/lost/train_log.jsonl" "$work/lost-log-$attempt"
    "$APIARY" train -c "$config" "${settings[@]}" --set run_name=lost --set train.epochs=1 \
        --resume > /dev/null 2> "$work/lost-$attempt.err" ||
        { cat "$work/lost-$attempt.err"; fail "resume $attempt without a checkpoint failed"; }
    grep -q "WARN.*no checkpoint $work/lost/checkpoint.safetensors to resume from, so training \
starts from the first epoch; the log of the earlier start is moved to \
$work/lost/train_log.jsonl.$attempt" "$work/lost-$attempt.err" ||
        { cat "$work/lost-$attempt.err"; fail "resume $attempt does not warn about the checkpoint"; }
    cmp -s "$work/lost-log-$attempt" "$work/lost/train_log.jsonl.$attempt" ||
        fail "train_log.jsonl.$attempt is not the log of the earlier start"
    [ "$(epoch_losses "$work/lost/train_log.jsonl" | wc -l)" -eq 1 ] ||
        fail "train_log.jsonl after resume $attempt does not hold exactly one epoch"
done
cmp -s "$work/lost-log-1" "$work/lost/train_log.jsonl.1" ||
    fail "the second set-aside overwrote train_log.jsonl.1"

# A resumed run must use the settings it started with. Each changed key is
# named with both values, the exit code is 2 (a config error), and the check
# comes before any image is read: the data.root case points to no data.
"$APIARY" train -c "$config" "${settings[@]}" --set run_name=changed --set train.epochs=1 \
    > /dev/null 2>&1 || fail "short run failed"
rm "$work/changed/complete.json"
cp "$work/changed/config.yaml" "$work/changed-config.yaml"
expect_rejected_resume() {
    local name=$1 expected=$2
    shift 2
    set +e
    "$APIARY" train -c "$config" "${settings[@]}" --set run_name=changed --set train.epochs=1 \
        --resume "$@" > /dev/null 2> "$work/changed-$name.err"
    local code=$?
    set -e
    [ "$code" -eq 2 ] ||
        { cat "$work/changed-$name.err"; fail "resume with $name changed exited with $code, expected 2"; }
    grep -qF "$expected" "$work/changed-$name.err" ||
        { cat "$work/changed-$name.err"; fail "the error does not name $name with both values"; }
    grep -q "choose a new run_name" "$work/changed-$name.err" ||
        fail "the error for $name does not say what to do"
}
expect_rejected_resume learning_rate "train.learning_rate (0.003 in the run, 0.5 now)" \
    --set train.learning_rate=0.5
expect_rejected_resume batch_size "train.batch_size (16 in the run, 8 now)" \
    --set train.batch_size=8
expect_rejected_resume seed "seed (42 in the run, 7 now)" --set seed=7
expect_rejected_resume epochs "train.epochs (1 in the run, 3 now)" --set train.epochs=3
expect_rejected_resume root "$work/elsewhere now)" --set data.root="$work/elsewhere"
grep -q "data.root (" "$work/changed-root.err" || fail "the error does not name data.root"
cmp -s "$work/changed/config.yaml" "$work/changed-config.yaml" ||
    fail "a rejected resume changed the run's config.yaml"

# Without the run's config.yaml the checkpoint's settings hash still rejects
# changed settings, before config.yaml is written again, so the resume with
# the original settings still works afterwards.
rm "$work/changed/config.yaml"
expect_rejected_resume lost-config "was written with different settings than $config" \
    --set train.learning_rate=0.5
[ ! -e "$work/changed/config.yaml" ] || fail "a rejected resume wrote config.yaml with its settings"
"$APIARY" train -c "$config" "${settings[@]}" --set run_name=changed --set train.epochs=1 \
    --resume > /dev/null 2> "$work/changed-restored.err" ||
    { cat "$work/changed-restored.err"; fail "the resume with the original settings failed"; }
echo "PASS"
