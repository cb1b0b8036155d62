#!/usr/bin/env bash
# A metric without a value, here the recall of a label with no positive image
# in the validation split, reads n/a in the epoch log line and null in
# train_log.jsonl, never nan.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir train-log-undefined)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"

# The wasp-trap images with a manifest that marks no image as asian_hornet.
root="$work/data"
mkdir -p "$root/images"
for image in "$data"/wasp-trap/images/*; do
    ln -s "$image" "$root/images/"
done
awk -F, -v OFS=, 'NR == 1 { print; next } { $4 = 0; print }' "$data/wasp-trap/labels.csv" \
    > "$root/labels.csv"
[ "$(head -n 1 "$root/labels.csv" | cut -d, -f4)" = asian_hornet ] ||
    fail "column 4 of the manifest is not asian_hornet"

"$APIARY" train -c "$config" --set output_dir="$work/runs" --set run_name=undefined \
    --set data.root="$root" --set train.epochs=1 > /dev/null 2> "$work/train.err" ||
    { tail -n 20 "$work/train.err"; fail "training failed"; }
line=$(grep -E 'epoch 1/1 train_loss' "$work/train.err") ||
    { cat "$work/train.err"; fail "no epoch line in the log"; }
grep -q "| asian_hornet acc [0-9.]* rec n/a " <<< "$line" ||
    fail "the undefined recall is not logged as n/a: $line"
! grep -qw nan <<< "$line" || fail "the epoch line contains nan: $line"

python3 - "$work/runs/undefined/train_log.jsonl" <<'PY' || fail "train_log.jsonl does not hold null"
import json, sys
epochs = [json.loads(line) for line in open(sys.argv[1]) if '"event":"epoch"' in line]
if len(epochs) != 1:
    sys.exit(f"{len(epochs)} epoch lines, expected 1")
recall = epochs[0]["val"]["asian_hornet"]["recall"]
if recall is not None:
    sys.exit(f"asian_hornet recall is {recall!r}, expected null")
PY
echo "PASS"
