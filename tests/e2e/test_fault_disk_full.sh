#!/usr/bin/env bash
# Write errors while apiary writes its image cache, checkpoints, validation
# reports and registry entries. Each stage exits with code 5 and an error that
# names the file. The previous files keep their content (same SHA-256), and
# no temporary file is left. Writes fail through RLIMIT_FSIZE (ulimit -f, with
# SIGXFSZ ignored, so write() returns EFBIG). They also fail on a full tmpfs
# where an unprivileged mount namespace is allowed (unshare -rm); elsewhere
# that part is skipped.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir fault-disk-full)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(-c "$config" --set output_dir="$work" --set registry.uri="$work/registry")

# Run a command with files limited to $1 KiB.
limited() {
    local kib=$1
    shift
    (
        trap '' XFSZ
        ulimit -f "$kib"
        exec "$@"
    )
}

# SHA-256 of every file under a folder but the lock files (their content is
# the holder's process id), one "HASH  PATH" line each.
hashes() {
    (cd "$1" && find . -type f ! -name '*.lock' -print0 | sort -z | xargs -0 sha256sum)
}

# Expect exit code 5 from the last command and an error that names $2.
expect_write_error() {
    local what=$1 file=$2 log=$3 code=$4
    [ "$code" -eq 5 ] || { cat "$log"; fail "$what: exit code $code, expected 5"; }
    grep -q "ERROR.*$file" "$log" || { cat "$log"; fail "$what: the error does not name $file"; }
}

expect_no_temps() {
    local left
    left=$(find "$1" -name '*.tmp.*' -o -name '.register-*')
    [ -z "$left" ] || fail "$2: temporary files left: $left"
}

"$APIARY" run "${common[@]}" --set run_name=good > /dev/null 2> "$work/good.err" ||
    { cat "$work/good.err"; fail "the first run failed"; }

# Image cache: a stale cache (other image size) must survive a failed rebuild.
mkdir -p "$work/cache-run/cache"
cp "$work/good/cache/images.bin" "$work/cache-run/cache/"
before=$(hashes "$work/cache-run/cache")
set +e
limited 1000 "$APIARY" train "${common[@]}" --set run_name=cache-run --set data.width=40 \
    > /dev/null 2> "$work/cache.err"
code=$?
set -e
expect_write_error "image cache" "cache/images.bin" "$work/cache.err" "$code"
[ "$(hashes "$work/cache-run/cache")" = "$before" ] || fail "the failed rebuild changed the cache"
expect_no_temps "$work/cache-run" "image cache"

# Checkpoint: stop a run with SIGTERM (it saves a checkpoint), then resume it
# with too little room for the next one.
# The signal goes out as the 15th step line (in epoch 2) is logged.
outcome=$(python3 "$APIARY_SOURCE_DIR/tests/tools/kill_at_random.py" --seed 1 --signal TERM \
    --pattern 'epoch [0-9]+ step ' --min-events 15 --events 15 --max-delay 0 \
    --log "$work/ckpt.err" -- "$APIARY" train "${common[@]}" --set run_name=ckpt \
    --set train.epochs=3 --set train.log_every=1)
grep -q "exited with 6" <<< "$outcome" ||
    { cat "$work/ckpt.err"; fail "the stopped run: $outcome, expected exit code 6"; }
before=$(hashes "$work/ckpt")
set +e
limited 40 "$APIARY" train "${common[@]}" --set run_name=ckpt --set train.epochs=3 \
    --set train.log_every=1 --resume > /dev/null 2> "$work/ckpt-full.err"
code=$?
set -e
expect_write_error "checkpoint" "checkpoint.safetensors" "$work/ckpt-full.err" "$code"
after=$(hashes "$work/ckpt")
grep -q checkpoint.safetensors <<< "$before" || fail "no checkpoint before the resume"
[ "$(grep -v train_log <<< "$after")" = "$(grep -v train_log <<< "$before")" ] ||
    fail "the failed checkpoint write changed the run folder"
expect_no_temps "$work/ckpt" "checkpoint"
"$APIARY" train "${common[@]}" --set run_name=ckpt --set train.epochs=3 --set train.log_every=1 \
    --resume > /dev/null 2> "$work/ckpt-resumed.err" ||
    { cat "$work/ckpt-resumed.err"; fail "the resume after the write error failed"; }

# Validation reports: a failed write keeps the previous report set.
before=$(hashes "$work/good" | grep report)
set +e
limited 45 "$APIARY" validate "${common[@]}" --set run_name=good > /dev/null 2> "$work/report.err"
code=$?
set -e
expect_write_error "validation report" "report.json" "$work/report.err" "$code"
[ "$(hashes "$work/good" | grep report)" = "$before" ] ||
    fail "the failed report write changed the previous reports"
expect_no_temps "$work/good" "validation report"

# Registry: a version whose files cannot be written is not registered, and
# the registry keeps its content.
"$APIARY" train "${common[@]}" --set run_name=second --set seed=9 > /dev/null 2>&1 ||
    fail "the second training run failed"
set +e
"$APIARY" validate "${common[@]}" --set run_name=second --set seed=9 > /dev/null 2>&1
code=$?
set -e
[ "$code" -eq 0 ] || [ "$code" -eq 3 ] || fail "validation of the second run exited with $code"
before=$(hashes "$work/registry")
set +e
limited 16 "$APIARY" promote "${common[@]}" --set run_name=second --set seed=9 --force \
    --reason "write error test" > /dev/null 2> "$work/registry.err"
code=$?
set -e
expect_write_error "registry entry" "model.safetensors" "$work/registry.err" "$code"
[ "$(hashes "$work/registry")" = "$before" ] || fail "the failed promotion changed the registry"
expect_no_temps "$work/registry" "registry entry"
"$APIARY" registry list "${common[@]}" > "$work/list.out"
[ "$(grep -c '^[0-9]' "$work/list.out")" -eq 1 ] || fail "a version with unwritten files is listed"

# A full file system (ENOSPC) on a tmpfs in a private mount namespace.
if ! unshare -rm true 2> /dev/null; then
    echo "SKIP part: unshare -rm is not allowed here, so no tmpfs can be mounted"
    echo "PASS"
    exit 0
fi
mkdir -p "$work/small"
kib=$(($(du -sk "$work/good" | cut -f1) + 24))
APIARY_SMALL_KIB=$kib unshare -rm bash -c '
    set -e
    mount -t tmpfs -o size=${APIARY_SMALL_KIB}k tmpfs "$1/small"
    cp -a "$1/good" "$1/small/good"
    (cd "$1/small/good" && sha256sum report.json report.md report.html) > "$1/small-before"
    set +e
    "$2" validate -c "$3" --set output_dir="$1/small" --set registry.uri="$1/registry" \
        --set run_name=good > /dev/null 2> "$1/small.err"
    echo $? > "$1/small-code"
    (cd "$1/small/good" && sha256sum report.json report.md report.html) > "$1/small-after"
    find "$1/small" -name "*.tmp.*" > "$1/small-temps"
' bash "$work" "$APIARY" "$config" || fail "the tmpfs part could not run"
expect_write_error "full disk" "report" "$work/small.err" "$(cat "$work/small-code")"
grep -q "No space left on device" "$work/small.err" || fail "the error does not say the disk is full"
cmp -s "$work/small-before" "$work/small-after" || fail "a full disk changed the previous reports"
[ ! -s "$work/small-temps" ] || fail "a full disk left temporary files: $(cat "$work/small-temps")"
echo "PASS"
