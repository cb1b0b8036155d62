#!/usr/bin/env bash
# Training killed with SIGKILL at seeded random points, then resumed with
# --resume, ends with weights bit-identical to an uninterrupted run and leaves
# no temporary files of the killed writers in the run folder.
# APIARY_FAULT_SEED picks other kill points (the default keeps runs repeatable).
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir fault-train-kill)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
killer="$APIARY_SOURCE_DIR/tests/tools/kill_at_random.py"
seed=${APIARY_FAULT_SEED:-4242}
[[ $seed =~ ^[0-9]+$ ]] || fail "APIARY_FAULT_SEED must be a whole number, not '$seed'"
export APIARY_DATA_DIR="$data"
settings=(-c "$config" --set output_dir="$work" --set train.epochs=3 --set train.log_every=1
    --set train.threads=2)
echo "kill points from seed $seed"

"$APIARY" train "${settings[@]}" --set run_name=whole > /dev/null 2> "$work/whole.err" ||
    { cat "$work/whole.err"; fail "uninterrupted run failed"; }
# Kill points count the log's step and epoch lines, so machine speed does not move them.
progress='epoch [0-9]+ step |epoch [0-9]+/[0-9]+ '
events=$(grep -cE "$progress" "$work/whole.err")
echo "uninterrupted run: $events step and epoch lines"

# Stale temporary files: the final path plus ".tmp." and six characters, as
# a writer killed between creating and renaming its file leaves them.
stale_temps() {
    find "$1" -name '*.tmp.*' -printf '%P\n' | sort
}

landed=0
for trial in 1 2 3; do
    run=kill$trial
    # Trials 2 and 3 are killed twice before the final resume. The second
    # attempt resumes from a checkpoint, so it has fewer lines left to log.
    for attempt in $(seq 1 $((trial == 1 ? 1 : 2))); do
        outcome=$(python3 "$killer" --seed $((seed * 10 + trial * 3 + attempt)) \
            --pattern "$progress" --events $((events / attempt)) --max-delay 0.03 --log "$work/$run.log" -- \
            "$APIARY" train "${settings[@]}" --set run_name=$run --resume)
        echo "trial $trial, attempt $attempt: $outcome"
        case $outcome in
        killed*) landed=$((landed + 1)) ;;
        "exited with 0"*) ;;
        *) cat "$work/$run.log"; fail "trial $trial attempt $attempt: $outcome" ;;
        esac
    done
    if [ "$trial" -eq 3 ]; then
        # Files that a writer killed mid-write leaves behind, planted so that
        # every run of this test checks their removal.
        mkdir -p "$work/$run/cache"
        echo partial > "$work/$run/checkpoint.safetensors.tmp.Ab12Cd"
        echo partial > "$work/$run/cache/images.bin.tmp.Zz90yY"
    fi
    "$APIARY" train "${settings[@]}" --set run_name=$run --resume > /dev/null \
        2> "$work/$run.resumed.err" || { cat "$work/$run.resumed.err"; fail "trial $trial: resume failed"; }
    [ -f "$work/$run/complete.json" ] || fail "trial $trial: no complete.json after the resume"
    cmp -s "$work/whole/model.safetensors" "$work/$run/model.safetensors" ||
        fail "trial $trial: resumed weights differ from the uninterrupted run"
    left=$(stale_temps "$work/$run")
    [ -z "$left" ] || fail "trial $trial: temporary files left in the run folder: $left"
done
[ "$landed" -ge 2 ] || fail "only $landed of 5 kills landed before the run ended"
echo "PASS"
