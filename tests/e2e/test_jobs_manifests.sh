#!/usr/bin/env bash
# The deployment files in jobs/, checked offline. The kustomize output of the
# base, both overlays and the distributed training jobs validates against the
# Kubernetes 1.31 and 1.37 schemas (strict) and the MPI Operator's MPIJob
# schema, and it meets the pod and retry rules of jobs/check-manifests. Broken
# copies fail those checks. The configs in the ConfigMaps load in apiary, and
# the Dockerfiles lint clean and install every -dev package of
# scripts/install-deps. Skips when the tools of scripts/install-test-tools are
# missing.
source "$(dirname "$0")/common.sh"
src="$APIARY_SOURCE_DIR"
venv="${APIARY_TEST_VENV:-$src/.venv-test}"
python="$venv/bin/python"
kubectl="$venv/bin/kubectl"
[ -x "$kubectl" ] || skip "kubectl is not installed; run scripts/install-test-tools"
"$python" -c 'import kubernetes_validate, jsonschema, yaml' 2> /dev/null ||
    skip "kubernetes-validate is not installed; run scripts/install-test-tools"
work=$(make_work_dir jobs-manifests)
check=("$python" "$src/jobs/check-manifests" -k 1.31.0 -k 1.37.0)
# The broken copies differ from valid output in one place, so one version is enough.
check_one=("$python" "$src/jobs/check-manifests" -k 1.31.0)

# The ConfigMap's copy of the nightly config matches configs/nightly.yaml.
cmp -s "$src/configs/nightly.yaml" "$src/jobs/base/config/nightly.yaml" ||
    fail "jobs/base/config/nightly.yaml differs from configs/nightly.yaml; copy it over"

for target in base overlays/staging overlays/production distributed/mpi distributed/single-node; do
    out="$work/$(echo "$target" | tr / -).yaml"
    "$kubectl" kustomize "$src/jobs/$target" > "$out" 2> "$work/kustomize.err" ||
        { cat "$work/kustomize.err"; fail "kubectl kustomize jobs/$target failed"; }
done

# Each rendered set alone, except the distributed jobs, which use what an overlay deployed.
"${check[@]}" --apiary "$APIARY" "$work/base.yaml" > "$work/base.out" ||
    { cat "$work/base.out"; fail "jobs/base does not pass check-manifests"; }
for overlay in staging production; do
    "${check[@]}" --apiary "$APIARY" --pinned-images "$work/overlays-$overlay.yaml" \
        > "$work/$overlay.out" || { cat "$work/$overlay.out"; fail "overlay $overlay fails"; }
done
"${check[@]}" --apiary "$APIARY" --pinned-images "$work/overlays-production.yaml" \
    "$work/distributed-mpi.yaml" "$work/distributed-single-node.yaml" > "$work/distributed.out" ||
    { cat "$work/distributed.out"; fail "the distributed training jobs fail check-manifests"; }
grep -qx "kind: MPIJob" "$work/distributed-mpi.yaml" || fail "no MPIJob in jobs/distributed/mpi"

# Every hand-written manifest (not the kustomization and patch files) validates alone.
manifests=()
while IFS= read -r file; do
    manifests+=("$file")
done < <(find "$src/jobs" -name '*.yaml' ! -name kustomization.yaml ! -name patches.yaml \
    ! -path '*/config/*' | sort)
[ "${#manifests[@]}" -ge 10 ] || fail "found ${#manifests[@]} manifests in jobs/, expected 10 or more"
"${check[@]}" --no-references "${manifests[@]}" > "$work/files.out" ||
    { cat "$work/files.out"; fail "a manifest file in jobs/ fails check-manifests"; }

# Broken copies of the rendered output must fail, each for its own reason. A
# change is a Python statement on these names: nightly (the job spec of
# apiary-nightly), nightly_pod and nightly_container (its pod spec and apiary
# container), serve_container (the container of apiary-serve), cronjobs (by
# name) and mpijob (the spec of apiary-train-mpi).
mutate() {
    local name=$1 input=$2 change=$3
    "$python" - "$input" "$work/$name.yaml" "$change" <<'PY'
import sys
import yaml
documents = list(yaml.safe_load_all(open(sys.argv[1])))
index = {(d["kind"], d["metadata"]["name"]): d for d in documents}
names = {"cronjobs": {n: d for (k, n), d in index.items() if k == "CronJob"}}
if ("CronJob", "apiary-nightly") in index:
    nightly = index[("CronJob", "apiary-nightly")]["spec"]["jobTemplate"]["spec"]
    names["nightly"] = nightly
    names["nightly_pod"] = nightly["template"]["spec"]
    names["nightly_container"] = nightly["template"]["spec"]["containers"][0]
if ("Deployment", "apiary-serve") in index:
    serve = index[("Deployment", "apiary-serve")]["spec"]["template"]["spec"]
    names["serve_container"] = serve["containers"][0]
if ("MPIJob", "apiary-train-mpi") in index:
    names["mpijob"] = index[("MPIJob", "apiary-train-mpi")]["spec"]
exec(sys.argv[3], names)
yaml.safe_dump_all(documents, open(sys.argv[2], "w"))
PY
}
expect_failure() {
    local name=$1 message=$2
    shift 2
    if "${check_one[@]}" --apiary "$APIARY" "$@" "$work/$name.yaml" > "$work/$name.out"; then
        fail "check-manifests accepted the $name copy"
    fi
    grep -qF -- "$message" "$work/$name.out" ||
        { cat "$work/$name.out"; fail "the $name copy failed without '$message'"; }
}
production="$work/overlays-production.yaml"

mutate root "$production" 'nightly_pod["securityContext"]["runAsNonRoot"] = False'
expect_failure root "runAsNonRoot is not true"
mutate capabilities "$production" 'nightly_container["securityContext"]["capabilities"] = {}'
expect_failure capabilities "capabilities.drop lacks ALL"
mutate writable "$production" 'nightly_container["securityContext"]["readOnlyRootFilesystem"] = False'
expect_failure writable "readOnlyRootFilesystem is not true"
mutate seccomp "$production" 'del nightly_pod["securityContext"]["seccompProfile"]'
expect_failure seccomp "seccompProfile is not RuntimeDefault"
mutate typo "$production" 'nightly["podReplacementPolicyy"] = "Failed"'
expect_failure typo "'podReplacementPolicyy' was unexpected"
mutate gate_retried "$production" 'nightly["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] = [2]'
expect_failure gate_retried "retries a model that failed the gate (exit code 3)"
mutate all_failures "$production" \
    'nightly["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] = [1, 2, 3]'
expect_failure all_failures "expected exactly [2, 3]"
mutate restart "$production" 'nightly_pod["restartPolicy"] = "OnFailure"'
expect_failure restart "podFailurePolicy needs restartPolicy Never"
mutate eviction "$production" 'nightly["podFailurePolicy"]["rules"].pop(1)'
expect_failure eviction "does not ignore DisruptionTarget"
mutate inline_secret "$production" \
    'nightly_container["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"})'
expect_failure inline_secret "AWS_SECRET_ACCESS_KEY has an inline value"
mutate long_name "$production" \
    'cronjobs["apiary-nightly"]["metadata"]["name"] = "apiary-nightly-" + 40 * "x"'
expect_failure long_name "at most 52 leave room"
mutate missing_config "$production" 'nightly_pod["volumes"][0]["configMap"]["name"] = "apiary-nothing"'
expect_failure missing_config "refers to ConfigMap apiary-nothing"
mutate no_probe "$production" 'del serve_container["readinessProbe"]'
expect_failure no_probe "has no readinessProbe"
mutate latest "$production" 'serve_container["image"] = "apiary-cpu:latest"'
expect_failure latest "is not a registry reference with a fixed tag" --pinned-images

mpi="$work/distributed-mpi.yaml"
mutate mpi_slots "$mpi" 'mpijob["slotsPerWorker"] = "8"'
expect_failure mpi_slots "spec.slotsPerWorker: '8' is not of type 'integer'" --no-references
mutate mpi_field "$mpi" 'mpijob["slotPerWorker"] = 8'
expect_failure mpi_field "'slotPerWorker' was unexpected" --no-references
mutate mpi_role "$mpi" \
    'mpijob["mpiReplicaSpecs"]["Workers"] = mpijob["mpiReplicaSpecs"].pop("Worker")'
expect_failure mpi_role "'Workers' is not one of ['Launcher', 'Worker']" --no-references
mutate mpi_pod "$mpi" \
    'mpijob["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["volumeMount"] = []'
expect_failure mpi_pod "MPIJob Worker pod template invalid for Kubernetes 1.31" --no-references
mutate mpi_count "$mpi" 'mpijob["mpiReplicaSpecs"]["Worker"]["replicas"] = 3'
expect_failure mpi_count "mpirun -np 16 differs from Worker replicas x slotsPerWorker = 24" \
    --no-references

# The scoring CronJob's shell wrapper, after Kubernetes' $(NAME) and $$
# expansion, passes yesterday's folders (or APIARY_SCORE_DAY's) to apiary score.
mkdir -p "$work/bin"
printf '#!/bin/sh\nprintf "%%s\\n" "$@"\n' > "$work/bin/apiary"
chmod +x "$work/bin/apiary"
"$python" - "$work/overlays-production.yaml" > "$work/score.sh" <<'PY'
import re
import sys
import yaml
documents = list(yaml.safe_load_all(open(sys.argv[1])))
cronjob = [d for d in documents if d["kind"] == "CronJob" and d["metadata"]["name"] == "apiary-score"][0]
container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
assert container["command"] == ["/bin/sh", "-c"], container["command"]
# Kubernetes turns $$ into $ and would replace $(NAME) of a defined variable,
# so the script must contain no such reference.
script = container["args"][0]
assert not re.search(r"(?<!\$)\$\([A-Za-z_][A-Za-z0-9_]*\)", script), "a $(NAME) reference"
print(script.replace("$$", "$"))
PY
yesterday=$(date -u -d yesterday +%F)
score_env=(APIARY_SCORE_INPUT_PREFIX=s3://in APIARY_SCORE_OUTPUT_PREFIX=s3://out)
env "${score_env[@]}" PATH="$work/bin:$PATH" sh "$work/score.sh" > "$work/score.out" ||
    fail "the scoring script failed"
grep -qx "score.input=s3://in/$yesterday/" "$work/score.out" ||
    { cat "$work/score.out"; fail "the scoring script does not score $yesterday"; }
grep -qx "score.output=s3://out/$yesterday/" "$work/score.out" ||
    fail "the scoring script does not write to the folder of $yesterday"
env "${score_env[@]}" APIARY_SCORE_DAY=2026-05-01 PATH="$work/bin:$PATH" sh "$work/score.sh" \
    > "$work/score-day.out" || fail "the scoring script failed with APIARY_SCORE_DAY"
grep -qx "score.input=s3://in/2026-05-01/" "$work/score-day.out" ||
    fail "APIARY_SCORE_DAY does not pick the day to score"

# The configs of the ConfigMaps load in apiary: every key exists and has a
# valid value. A config whose section this apiary build lacks is skipped.
export APIARY_DATA_URI=s3://bucket/beedataset APIARY_THREADS=4
"$APIARY" config keys > "$work/keys.txt"
for config in "$src/configs/nightly.yaml" "$src"/jobs/base/config/*.yaml; do
    sections=$("$python" -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))))' \
        "$config")
    missing=""
    for section in $sections; do
        grep -q "^${section}[ .]" "$work/keys.txt" || missing="$section"
    done
    if [ -n "$missing" ]; then
        echo "note: $config not loaded: this apiary has no $missing keys"
        continue
    fi
    "$APIARY" config show -c "$config" > /dev/null 2> "$work/config.err" ||
        { cat "$work/config.err"; fail "apiary rejects $config"; }
done

# Container builds: both install every -dev package of scripts/install-deps,
# and their runtime stages have no compilers, a non-root user and apiary as
# the entry point.
dev_packages=$(grep -oE '[a-z0-9.+-]+-dev\b' "$src/scripts/install-deps" | sort -u)
[ -n "$dev_packages" ] || fail "found no -dev packages in scripts/install-deps"
for dockerfile in "$src/jobs/Dockerfile" "$src/jobs/Dockerfile.cpu"; do
    for package in $dev_packages; do
        grep -qw -- "$package" "$dockerfile" || fail "$dockerfile does not install $package"
    done
    [ -f "$dockerfile.dockerignore" ] || fail "$dockerfile has no $dockerfile.dockerignore"
    # The instructions of the last stage, without comments.
    runtime=$(awk '/^FROM /{stage=""} !/^#/{stage = stage $0 "\n"} END {printf "%s", stage}' \
        "$dockerfile")
    grep -q '^FROM .* AS runtime$' <<< "$runtime" || fail "$dockerfile does not end with a runtime stage"
    if grep -qE -- '-dev\b|build-essential|\bgcc\b|cmake' <<< "$runtime"; then
        fail "the runtime stage of $dockerfile installs build tools"
    fi
    grep -qx 'USER 10001:10001' <<< "$runtime" || fail "$dockerfile does not run as uid 10001"
    grep -qx 'ENTRYPOINT \["apiary"\]' <<< "$runtime" || fail "$dockerfile lacks ENTRYPOINT apiary"
    if grep -qiE '^(ENV|ARG) .*(SECRET|PASSWORD|TOKEN|ACCESS_KEY)' "$dockerfile"; then
        fail "$dockerfile puts a credential into an image layer"
    fi
done
if [ -x "$venv/bin/hadolint" ]; then
    "$venv/bin/hadolint" "$src/jobs/Dockerfile" "$src/jobs/Dockerfile.cpu" ||
        fail "hadolint reports problems in the Dockerfiles"
else
    echo "note: hadolint not installed, Dockerfiles not linted"
fi

# The runtime stage installs what jobs/runtime-packages finds for a binary.
"$src/jobs/runtime-packages" "$APIARY" > "$work/packages.txt" ||
    fail "jobs/runtime-packages failed on $APIARY"
grep -qx libc6 "$work/packages.txt" || fail "jobs/runtime-packages did not list libc6"
grep -qx 'libyaml-0-2' "$work/packages.txt" || fail "jobs/runtime-packages did not list libyaml-0-2"
while read -r package; do
    dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "install ok installed" ||
        fail "jobs/runtime-packages listed $package, which is not an installed package"
done < "$work/packages.txt"
set +e
"$src/jobs/runtime-packages" "$work/no-such-binary" > /dev/null 2>&1
code=$?
set -e
[ "$code" -eq 2 ] || fail "jobs/runtime-packages on a missing file exited with $code, expected 2"

# The SSH client settings of the MPI launcher parse and set the worker port.
if command -v ssh > /dev/null; then
    ssh -G -F "$src/jobs/ssh/ssh_config" worker-0 > "$work/ssh.txt" ||
        fail "ssh rejects jobs/ssh/ssh_config"
    grep -qx 'port 2222' "$work/ssh.txt" || fail "jobs/ssh/ssh_config does not set port 2222"
fi

if [ -x "$venv/bin/shellcheck" ]; then
    "$venv/bin/shellcheck" "$src/jobs/submit" "$src/jobs/runtime-packages" \
        "$src/jobs/build-image" "$src"/scripts/ci-* ||
        fail "shellcheck reports problems in jobs/ or scripts/ci-*"
fi
echo "PASS"
