#!/usr/bin/env bash
# Train on the real wasp-trap images with the CI config: the loss falls, every
# run output exists, the model card is consistent, and a second run with the
# same seed gives bit-identical weights.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir train-wasp-trap)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"

"$APIARY" train -c "$config" --set output_dir="$work" --set run_name=first \
    > "$work/first.out" 2> "$work/first.err" || { cat "$work/first.err"; fail "training failed"; }
run="$work/first"
for file in config.yaml split.csv data_report.json checkpoint.safetensors model.safetensors \
    model_card.json train_log.jsonl complete.json; do
    [ -s "$run/$file" ] || fail "missing run output $file"
done
grep -q "model.safetensors" "$work/first.out" || fail "train did not print the model path"

python3 - "$run" <<'PY' || fail "run outputs are inconsistent"
import hashlib, json, sys
run = sys.argv[1]
epochs = [json.loads(l) for l in open(f"{run}/train_log.jsonl") if '"epoch"' in l]
epochs = [e for e in epochs if e["event"] == "epoch"]
assert len(epochs) >= 2, f"expected several epochs, got {len(epochs)}"
first, last = epochs[0]["train_loss"], epochs[-1]["train_loss"]
print(f"train loss {first:.4f} -> {last:.4f}")
assert last < first, f"training loss did not fall: {first} -> {last}"
card = json.load(open(f"{run}/model_card.json"))
weights = hashlib.sha256(open(f"{run}/model.safetensors", "rb").read()).hexdigest()
assert card["weights"]["sha256"] == weights, "model card hash does not match the weights"
assert card["labels"] == ["wasp", "hornet", "asian_hornet", "bee"], card["labels"]
split = hashlib.sha256(open(f"{run}/split.csv", "rb").read()).hexdigest()
assert card["data"]["split_sha256"] == split, "model card split hash mismatch"
assert set(card["metrics"]["validation"]) == set(card["labels"])
groups = {}
for line in open(f"{run}/split.csv").read().splitlines()[1:]:
    file, group, part = line.rsplit(",", 2)
    groups.setdefault(group, set()).add(part)
assert all(len(parts) == 1 for parts in groups.values()), "a group is on two sides"
PY

"$APIARY" train -c "$config" --set output_dir="$work" --set run_name=second \
    > /dev/null 2> "$work/second.err" || { cat "$work/second.err"; fail "second run failed"; }
cmp -s "$run/model.safetensors" "$work/second/model.safetensors" ||
    fail "two runs with the same seed gave different weights"

# A finished run is not trained again, with or without --resume.
before=$(sha256sum < "$run/model.safetensors")
"$APIARY" train -c "$config" --set output_dir="$work" --set run_name=first \
    > /dev/null 2> "$work/again.err" || { cat "$work/again.err"; fail "rerunning a finished run failed"; }
grep -q "already complete" "$work/again.err" || fail "the rerun did not report a finished run"
"$APIARY" train -c "$config" --set output_dir="$work" --set run_name=first --resume \
    > /dev/null 2> "$work/resume.err" || fail "--resume on a finished run failed"
grep -q "already complete" "$work/resume.err" || fail "--resume did not report a finished run"
[ "$(sha256sum < "$run/model.safetensors")" = "$before" ] || fail "a rerun changed the finished model"
echo "PASS"
