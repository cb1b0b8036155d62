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
