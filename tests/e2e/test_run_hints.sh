#!/usr/bin/env bash
# The commands that messages suggest reach the same run. apiary run stopped by
# SIGTERM names the same apiary run command to rerun, since it has no
# --resume. Validate of an unfinished run names the train command with every
# --set option of the command line. Both suggested commands are run as printed.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir run-hints)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
# The rule has spaces, so the hints must quote it to be usable.
common=(-c "$config" --set output_dir="$work/runs" --set registry.uri="$work/registry"
    --set "gate.rules=wasp.recall >= 0" --set train.log_every=1 --set run_name=runint)

# The suggested commands call apiary by name.
apiary() {
    "$APIARY" "$@"
}

outcome=$(python3 "$APIARY_SOURCE_DIR/tests/tools/kill_at_random.py" --seed 1 --signal TERM \
    --pattern "epoch 1 step" --min-events 1 --events 1 --max-delay 0 --log "$work/stop.err" -- \
    "$APIARY" run "${common[@]}")
grep -q "exited with 6" <<< "$outcome" ||
    { cat "$work/stop.err"; fail "the stopped run: $outcome, expected exit code 6"; }
rerun=$(sed -n 's/.* is saved, so rerun \(apiary run .*\) to continue from it.*/\1/p' "$work/stop.err")
[ -n "$rerun" ] || { cat "$work/stop.err"; fail "the stop message does not name an apiary run command"; }
! grep -q -- "--resume" <<< "$rerun" || fail "the apiary run hint has --resume: $rerun"
grep -q -- "--set run_name=runint" <<< "$rerun" || fail "the apiary run hint lacks the run name: $rerun"

set +e
"$APIARY" validate "${common[@]}" > /dev/null 2> "$work/validate.err"
code=$?
set -e
[ "$code" -ne 0 ] || fail "validating an unfinished run succeeded"
finish=$(sed -n 's/.*finish it with \(apiary train .* --resume\), or validate another run.*/\1/p' \
    "$work/validate.err")
[ -n "$finish" ] || { cat "$work/validate.err"; fail "validate does not name a train command"; }
grep -q -- "--set run_name=runint" <<< "$finish" || fail "the train hint lacks the run name: $finish"

eval "$finish" > /dev/null 2> "$work/finish.err" ||
    { cat "$work/finish.err"; fail "the suggested train command failed: $finish"; }
grep -q "resuming from $work/runs/runint/checkpoint.safetensors" "$work/finish.err" ||
    { cat "$work/finish.err"; fail "the suggested train command did not resume the run"; }
eval "$rerun" > /dev/null 2> "$work/rerun.err" ||
    { cat "$work/rerun.err"; fail "the suggested run command failed: $rerun"; }
grep -q "already complete; nothing to train" "$work/rerun.err" ||
    { cat "$work/rerun.err"; fail "the suggested run command did not find the finished run"; }
echo "PASS"
