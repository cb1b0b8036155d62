# Shared helpers for end-to-end tests; sourced, not run.
set -euo pipefail

: "${APIARY:?APIARY must name the apiary binary}"
: "${APIARY_SOURCE_DIR:?APIARY_SOURCE_DIR must name the source folder}"

skip() {
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

data_dir() {
    local dir="${APIARY_DATA_DIR:-}"
    [ -n "$dir" ] && [ -d "$dir" ] || skip "no test data folder (APIARY_DATA_DIR=$dir)"
    echo "$dir"
}

make_work_dir() {
    local root="${APIARY_TEST_TMP:-/tmp}"
    mkdir -p "$root"
    mktemp -d "$root/$1-XXXXXX"
}

# Print "EPOCH TRAIN_LOSS" for each epoch line of a train_log.jsonl, with
# None for a null loss.
epoch_losses() {
    python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    if entry.get("event") == "epoch":
        print(entry["epoch"], entry["train_loss"])
PY
}
