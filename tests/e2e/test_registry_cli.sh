#!/usr/bin/env bash
# The registry commands on a local registry filled by apiary promote from
# run folders written here (no training): exit codes and messages for
# versions, aliases and folders that do not exist.
source "$(dirname "$0")/common.sh"
work=$(make_work_dir registry-cli)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
registry="$work/registry"
common=(-c "$config" --set output_dir="$work" --set registry.uri="$registry"
    --set "gate.rules=wasp.recall >= 0")

# Write the run folder $work/NAME with weights, a card and a report whose
# verdict is PASSED (true or false), compared with champion COMPARED (0: none).
make_run() {
    python3 - "$work/$1" "$2" "$3" <<'PY'
import hashlib, json, os, sys
run, passed, compared = sys.argv[1], sys.argv[2] == "true", int(sys.argv[3])
os.makedirs(run, exist_ok=True)
weights = f"weights of {run}".encode()
open(f"{run}/model.safetensors", "wb").write(weights)
json.dump({"format": "apiary-model-card"}, open(f"{run}/model_card.json", "w"))
comparison = {"skipped": True, "reason": "no champion yet"}
if compared:
    comparison = {"skipped": False, "champion_version": compared,
                  "label_check": {"passed": True}, "labels": {}}
report = {"passed": passed, "model_sha256": hashlib.sha256(weights).hexdigest(),
          "rules": [{"rule": "wasp.recall >= 0", "op": ">=", "limit": 0,
                     "actual": 1 if passed else -1}],
          "data_checks": [], "comparison": comparison}
json.dump(report, open(f"{run}/report.json", "w"))
open(f"{run}/report.md", "w").write("# report\n")
PY
}

# Run a command that must fail: expect CODE PATTERN COMMAND...
expect() {
    local expected=$1 pattern=$2 code=0
    shift 2
    "$@" > "$work/last.out" 2> "$work/last.err" || code=$?
    [ "$code" -eq "$expected" ] ||
        { cat "$work/last.err"; fail "$* exited with $code, expected $expected"; }
    grep -q -- "$pattern" "$work/last.err" ||
        { cat "$work/last.err"; fail "$* does not say \"$pattern\""; }
}

# A registry folder that does not exist is a file system failure.
expect 5 "registry folder $registry cannot be read" "$APIARY" registry list "${common[@]}"
expect 5 "cannot be read" "$APIARY" registry history "${common[@]}"
expect 5 "cannot be read" "$APIARY" registry show 1 "${common[@]}"
expect 5 "cannot be read" "$APIARY" registry rollback "${common[@]}" --reason "no registry"
expect 5 "cannot be read" "$APIARY" score "${common[@]}" --input "$work" --output "$work/scores"

# Version 1 passes and becomes champion. Version 2 fails and is forced in.
make_run first true 0
"$APIARY" promote "${common[@]}" --set run_name=first > /dev/null 2> "$work/first.err" ||
    { cat "$work/first.err"; fail "promoting the first run failed"; }
make_run second false 1
"$APIARY" promote "${common[@]}" --set run_name=second --force --reason "fixture" > /dev/null \
    2> "$work/second.err" || { cat "$work/second.err"; fail "forcing the second run failed"; }

# A version or alias that the registry does not have is a usage error, and
# the message lists what there is.
listing="model apiary-bees has versions 1, 2, aliases champion (version 2)"
expect 2 "version 99 not found" "$APIARY" registry show 99 "${common[@]}"
grep -q "$listing" "$work/last.err" || { cat "$work/last.err"; fail "show 99 lists nothing"; }
expect 2 "cannot resolve \"0\"" "$APIARY" registry show 0 "${common[@]}"
grep -q "$listing" "$work/last.err" || { cat "$work/last.err"; fail "show 0 lists nothing"; }
expect 2 "alias shadow does not point at any version" "$APIARY" registry show shadow "${common[@]}"
expect 2 "version 99 not found" "$APIARY" registry rollback "${common[@]}" --to 99 --reason "typo"
grep -q "$listing" "$work/last.err" || { cat "$work/last.err"; fail "--to 99 lists nothing"; }
expect 2 "version 99 not found" "$APIARY" score "${common[@]}" --model 99 --input "$work" \
    --output "$work/scores"
grep -q "$listing" "$work/last.err" || { cat "$work/last.err"; fail "--model 99 lists nothing"; }
expect 2 "no such model folder" "$APIARY" registry list "${common[@]}" \
    --set registry.model_name=wasps

# Version 3 passes against champion 2. Rolling back to the failed version 2
# needs --force, which the message names and rollback accepts.
make_run third true 2
"$APIARY" promote "${common[@]}" --set run_name=third > /dev/null 2> "$work/third.err" ||
    { cat "$work/third.err"; fail "promoting the third run failed"; }
expect 2 "force the move with --force --reason TEXT" \
    "$APIARY" registry rollback "${common[@]}" --reason "undo again"
"$APIARY" registry rollback "${common[@]}" --reason "undo again" --force > "$work/forced.out" \
    2> "$work/forced.err" || { cat "$work/forced.err"; fail "a forced rollback failed"; }
[ "$(cat "$work/forced.out")" = 2 ] || fail "the forced rollback did not move champion to 2"
grep -q "champion now points at version 2 (forced)" "$work/forced.err" ||
    { cat "$work/forced.err"; fail "the forced rollback is not logged as forced"; }

# list and history print tables whose columns line up with their headers.
"$APIARY" registry list "${common[@]}" > "$work/list.out"
"$APIARY" registry history "${common[@]}" > "$work/history.out"
python3 - "$work/list.out" "$work/history.out" <<'PY' || fail "the tables are not aligned"
import sys
def rows(path):
    lines = open(path).read().splitlines()
    return lines[0], lines[1:]
header, versions = rows(sys.argv[1])
assert header.split() == ["version", "created", "verdict", "aliases"], header
assert len(versions) == 3, versions
for row in versions:
    created = row[header.index("created"):].split()[0]
    assert len(created) == 24, (header, row)
    assert created.endswith("Z"), (header, row)
    assert row[header.index("verdict"):].split()[0] in ("pass", "fail"), (header, row)
assert row[header.index("aliases"):] == "", row
assert versions[1][header.index("aliases"):] == "champion", versions[1]
header, moves = rows(sys.argv[2])
assert header.split() == ["time", "alias", "action", "from", "to", "forced", "reason"], header
expected = [("set", "-", "1", "no", "validation gate passed"),
            ("set", "1", "2", "yes", "fixture"),
            ("set", "2", "3", "no", "validation gate passed"),
            ("rollback", "3", "2", "yes", "undo again")]
assert len(moves) == len(expected), moves
for row, (action, source, target, forced, reason) in zip(moves, expected):
    cell = lambda name: row[header.index(name):].split()[0]
    assert cell("alias") == "champion", row
    assert (cell("action"), cell("from"), cell("to"), cell("forced")) == \
        (action, source, target, forced), row
    assert row[header.index("reason"):] == reason, row
PY

# An alias that points at a version that does not exist is listed with a
# warning, and showing it fails with the command that repairs it.
python3 - "$registry/apiary-bees/aliases.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["aliases"]["champion"] = 77
json.dump(doc, open(sys.argv[1], "w"))
PY
"$APIARY" registry list "${common[@]}" > "$work/dangling.out" 2> "$work/dangling.err" ||
    { cat "$work/dangling.err"; fail "registry list with a dangling alias failed"; }
grep -q "^alias champion points at version 77, which does not exist$" "$work/dangling.out" ||
    { cat "$work/dangling.out"; fail "registry list does not show the dangling alias"; }
grep -q "WARN.*alias champion points at version 77" "$work/dangling.err" ||
    { cat "$work/dangling.err"; fail "registry list does not warn about the dangling alias"; }
expect 5 "alias champion points at version 77, but" "$APIARY" registry show champion "${common[@]}"
grep -q "apiary registry rollback --alias champion --to VERSION" "$work/last.err" ||
    fail "the error does not say how to repair the alias"
"$APIARY" registry rollback "${common[@]}" --to 3 --reason "version 77 is gone" > /dev/null \
    2> "$work/repair.err" || { cat "$work/repair.err"; fail "repairing the alias failed"; }
"$APIARY" registry list "${common[@]}" > "$work/repaired.out" 2> "$work/repaired.err"
grep -q "^3 .*champion" "$work/repaired.out" || { cat "$work/repaired.out"; fail "champion is not 3"; }
grep -q "points at version" "$work/repaired.out" "$work/repaired.err" &&
    fail "a repaired alias is still reported"

# A blocked promotion names the report with its full path.
make_run failed false 3
expect 3 "promotion blocked: the model failed the validation gate (see $work/failed/report.md)" \
    "$APIARY" promote "${common[@]}" --set run_name=failed

# A missing model file is a file system failure, in the registry and in a run.
rm "$registry/apiary-bees/versions/2/model.safetensors"
expect 5 "version 2 lists model.safetensors, but" "$APIARY" score "${common[@]}" --model 2 \
    --input "$work" --output "$work/scores"
grep -q "restore the file, or point the alias at another version (apiary registry rollback" \
    "$work/last.err" || { cat "$work/last.err"; fail "the error offers no fix that works"; }
"$APIARY" registry list "${common[@]}" > "$work/damaged.out" 2> /dev/null ||
    fail "registry list failed on a registry with a damaged version"
grep -q "^2 .*(incomplete)$" "$work/damaged.out" ||
    { cat "$work/damaged.out"; fail "registry list does not flag the version without its model"; }
rm "$work/first/model.safetensors"
expect 5 "has no trained model" "$APIARY" promote "${common[@]}" --set run_name=first
echo "PASS"
