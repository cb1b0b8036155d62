#!/usr/bin/env bash
# Builds the CPU container image (jobs/Dockerfile.cpu) with buildah through
# jobs/build-image and checks its contents: a non-root user, no compilers, no
# missing libraries and no credentials in its config. Then runs the CI
# config's main job inside it on the test images.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

command -v buildah >/dev/null || skip "buildah is not installed (scripts/test installs it)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (scripts/test installs it)"
data="$(data_dir)"
src="$APIARY_SOURCE_DIR"
work="$(make_work_dir image)"

# Image storage stays between runs in the build folder, so later runs reuse
# the base image and the cached layers.
storage="${APIARY_TEST_TMP:-/tmp}/container-storage"
cat >"$work/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$storage/graph"
runroot = "$storage/run"
CONF
export CONTAINERS_STORAGE_CONF="$work/storage.conf"

if ! probe="$(buildah from scratch 2>&1)"; then
    skip "buildah cannot create containers on this machine: $probe"
fi
buildah rm "$probe" >/dev/null

bash "$src/tests/tools/debian_base_image.sh" "$work/base" || fail "no debian:12-slim base image"

tag="localhost/apiary-cpu:test-$$"
container=""
cleanup() {
    [ -n "$container" ] && buildah rm "$container" >/dev/null 2>&1
    buildah rmi "$tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$src/jobs/build-image" --cpu --engine buildah --tag "$tag" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    fail "jobs/build-image --cpu failed; log: $work/build.log"
}

revision="$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)"
buildah inspect --type image "$tag" >"$work/image.json"
python3 - "$work/image.json" "$revision" <<'PY' || fail "the image config is not as expected"
import json, sys
config = json.load(open(sys.argv[1]))["OCIv1"]["config"]
print(f"image config: {json.dumps(config)}")
problems = []
if config.get("User") != "10001:10001":
    problems.append(f"user is {config.get('User')!r}, expected '10001:10001'")
if config.get("Entrypoint") != ["apiary"]:
    problems.append(f"entry point is {config.get('Entrypoint')!r}, expected ['apiary']")
revision = config.get("Labels", {}).get("org.opencontainers.image.revision")
if revision != sys.argv[2]:
    problems.append(f"revision label is {revision!r}, expected {sys.argv[2]!r}")
for variable in config.get("Env", []):
    name = variable.split("=", 1)[0].upper()
    if any(word in name for word in ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY")):
        problems.append(f"credential variable {name} in the image environment")
for problem in problems:
    print(problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

container="$(buildah from --pull=never "$tag")"
in_image() {
    buildah run --isolation chroot "$@"
}

user_id="$(in_image "$container" -- id -u)"
[ "$user_id" = 10001 ] || fail "the image runs as uid $user_id, expected 10001"

if compilers="$(in_image "$container" -- sh -c 'command -v gcc cc c++ cmake' 2>/dev/null)"; then
    fail "the runtime image contains compilers: $compilers"
fi

missing="$(in_image "$container" -- sh -c 'ldd /usr/local/bin/apiary | grep "not found" || true')"
[ -z "$missing" ] || fail "libraries missing in the image: $missing"

mkdir -p "$work/out"
chmod 0777 "$work/out"
in_image -v "$src/configs:/etc/apiary:ro" -v "$data:/data:ro" -v "$work/out:/var/lib/apiary" \
    -e APIARY_DATA_DIR=/data "$container" -- apiary run -c /etc/apiary/ci.yaml \
    >"$work/run.log" 2>&1 || {
    tail -n 40 "$work/run.log" >&2
    fail "apiary run in the image failed; log: $work/run.log"
}
grep -q "gate: PASSED" "$work/run.log" || fail "the gate did not pass in the image"
grep -q "registry: version 1 is champion" "$work/run.log" ||
    fail "the model was not registered in the image"
[ -f "$work/out/runs/ci/model.safetensors" ] || fail "no model.safetensors in the run folder"
owner="$(stat -c %u "$work/out/runs/ci/model.safetensors")"
[ "$owner" = 10001 ] || fail "model.safetensors is owned by uid $owner, expected 10001"
echo "the CPU image builds and runs the main job as uid 10001"
