#!/usr/bin/env bash
# jobs/submit. --dry-run prints a ConfigMap with the config file and a Job made
# from the CronJob template, and both validate offline (Kubernetes 1.31 and
# 1.37 schemas, jobs/check-manifests). Invalid arguments exit with code 2 and a
# message, and a password in a URI is rejected without being printed. apiary
# config show (or, without an apiary binary, jobs/config-keys.txt) checks the
# config and the overrides first. The run is named after the Job. Against a
# stand-in kubectl on PATH that records its calls, a submission creates the
# ConfigMap, the Job and the owner reference, and --follow exits with the
# apiary exit code of the failed pod.
source "$(dirname "$0")/common.sh"
src="$APIARY_SOURCE_DIR"
venv="${APIARY_TEST_VENV:-$src/.venv-test}"
python="$venv/bin/python"
"$python" -c 'import kubernetes_validate, jsonschema, yaml' 2> /dev/null ||
    skip "kubernetes-validate is not installed; run scripts/install-test-tools"
[ -x "$venv/bin/kubectl" ] || skip "kubectl is not installed; run scripts/install-test-tools"
work=$(make_work_dir jobs-submit)
submit="$src/jobs/submit"
config="$src/configs/nightly.yaml"
check=("$python" "$src/jobs/check-manifests" -k 1.31.0 -k 1.37.0 --apiary "$APIARY")
export APIARY_PYTHON="$python"

# Dry run from the base CronJob: valid manifests carrying the config and overrides.
"$submit" -c "$config" --name apiary-manual-test --set train.epochs=40 \
    --set 'gate.rules=wasps.recall.lower >= 0.9' --dry-run > "$work/dry.yaml" 2> "$work/dry.err" ||
    { cat "$work/dry.err"; fail "jobs/submit --dry-run failed"; }
"$venv/bin/kubectl" kustomize "$src/jobs/base" > "$work/base.yaml"
"${check[@]}" "$work/dry.yaml" "$work/base.yaml" > "$work/check.out" ||
    { cat "$work/check.out"; fail "the dry-run manifests fail check-manifests"; }
"$python" - "$work/dry.yaml" "$config" <<'PY' || fail "the dry-run manifests are not as expected"
import sys
import yaml

documents = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = [d["kind"] for d in documents]
assert kinds == ["ConfigMap", "Job"], kinds
config_map, job = documents
assert config_map["metadata"]["name"] == "apiary-manual-test-config", config_map["metadata"]
stored = config_map["data"]["nightly.yaml"]
original = open(sys.argv[2]).read()
assert stored == original, "the ConfigMap does not hold the config file unchanged"
assert job["metadata"]["name"] == "apiary-manual-test", job["metadata"]
pod = job["spec"]["template"]["spec"]
container = [c for c in pod["containers"] if c["name"] == "apiary"][0]
expected = ["run", "-c", "/etc/apiary/nightly.yaml", "--set", "run_name=apiary-manual-test",
            "--set", "train.epochs=40", "--set", "gate.rules=wasps.recall.lower >= 0.9"]
assert container["args"] == expected, container["args"]
volume = [v for v in pod["volumes"] if v["name"] == "config"][0]
assert volume["configMap"] == {"name": "apiary-manual-test-config"}, volume
labels = job["spec"]["template"]["metadata"]["labels"]
assert labels["app.kubernetes.io/component"] == "manual-retrain", labels
assert "namespace" not in job["metadata"], job["metadata"]
PY

# The run is named after the Job, also when the config fixes run_name (as
# configs/local.yaml does) or when the Job gets the default name. An override
# of run_name replaces it.
run_args() {
    "$python" -c 'import sys, yaml
job = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Job"][0]
print(job["metadata"]["name"])
args = job["spec"]["template"]["spec"]["containers"][0]["args"]
print("\n".join(args[3:]))' "$1"
}
local_config="$src/configs/local.yaml"
grep -qx 'run_name: local .*' "$local_config" || fail "configs/local.yaml no longer fixes run_name"
"$submit" -c "$local_config" --name apiary-manual-local --set train.epochs=2 --dry-run \
    > "$work/local.yaml" || fail "jobs/submit --dry-run with configs/local.yaml failed"
[ "$(run_args "$work/local.yaml")" = "apiary-manual-local
--set
run_name=apiary-manual-local
--set
train.epochs=2" ] || fail "the run of Job apiary-manual-local is not named after it: $(run_args "$work/local.yaml")"
"$python" -c 'import sys, yaml
job = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Job"][0]
print("\0".join(job["spec"]["template"]["spec"]["containers"][0]["args"][3:]), end="")' \
    "$work/local.yaml" | xargs -0 "$APIARY" config show -c "$local_config" > "$work/local-show.yaml" ||
    fail "apiary config show rejected the arguments of Job apiary-manual-local"
grep -qx "run_name: apiary-manual-local" "$work/local-show.yaml" ||
    fail "apiary reads run_name $(grep '^run_name:' "$work/local-show.yaml") from the Job's arguments"
"$submit" -c "$local_config" --dry-run > "$work/default-name.yaml" ||
    fail "jobs/submit --dry-run without --name failed"
run_args "$work/default-name.yaml" > "$work/default-name.args"
default_name=$(head -n 1 "$work/default-name.args")
[[ "$default_name" =~ ^apiary-manual-[0-9]+$ ]] || fail "default Job name $default_name"
grep -qx "run_name=$default_name" "$work/default-name.args" ||
    fail "the run of Job $default_name is not named after it: $(cat "$work/default-name.args")"
"$submit" -c "$local_config" --name apiary-manual-promote --set run_name=apiary-train-mpi \
    --dry-run > "$work/own-name.yaml" || fail "jobs/submit --dry-run --set run_name failed"
[ "$(run_args "$work/own-name.yaml")" = "apiary-manual-promote
--set
run_name=apiary-train-mpi" ] || fail "an override of run_name was not kept alone: $(run_args "$work/own-name.yaml")"

# From a rendered overlay: its namespace and image, or the image given.
"$venv/bin/kubectl" kustomize "$src/jobs/overlays/production" > "$work/production.yaml"
"$submit" -c "$config" --name apiary-manual-prod --template "$work/production.yaml" \
    --image registry.example.com/apiary/apiary:0.2.0-rc1 -n apiary --dry-run > "$work/prod.yaml" ||
    fail "jobs/submit --dry-run --template failed"
"${check[@]}" --pinned-images "$work/prod.yaml" "$work/production.yaml" > "$work/prod.out" ||
    { cat "$work/prod.out"; fail "the dry-run manifests from the production overlay fail"; }
grep -q "image: registry.example.com/apiary/apiary:0.2.0-rc1" "$work/prod.yaml" ||
    fail "--image did not replace the image"
[ "$(grep -c '^  namespace: apiary$' "$work/prod.yaml")" -eq 2 ] ||
    fail "the ConfigMap and the Job are not both in namespace apiary"

# Invalid arguments: exit code 2 and a message that names the problem.
expect_usage_error() {
    local message=$1
    shift
    set +e
    "$submit" "$@" > "$work/usage.out" 2> "$work/usage.err"
    local code=$?
    set -e
    [ "$code" -eq 2 ] || fail "jobs/submit $* exited with $code, expected 2"
    grep -qF -- "$message" "$work/usage.err" ||
        { cat "$work/usage.err"; fail "jobs/submit $* did not print '$message'"; }
    [ ! -s "$work/usage.out" ] || fail "jobs/submit $* printed manifests despite the error"
}
expect_usage_error "missing -c CONFIG" --dry-run
expect_usage_error "-c given twice ($config and $work/other.yaml); give one config file" \
    -c "$config" --config "$work/other.yaml" --dry-run
expect_usage_error "config file $work/none.yaml not found" -c "$work/none.yaml" --dry-run
expect_usage_error "invalid --set 'train epochs=3'" -c "$config" --set 'train epochs=3' --dry-run
expect_usage_error "invalid --set 'train.epochs'" -c "$config" --set train.epochs --dry-run
expect_usage_error "invalid --set '=3'" -c "$config" --set =3 --dry-run
expect_usage_error "--set needs a value" -c "$config" --set
expect_usage_error "invalid --name 'Apiary_Manual'" -c "$config" --name Apiary_Manual --dry-run
expect_usage_error "unknown argument '--epochs'" -c "$config" --epochs 3
expect_usage_error "--follow cannot be combined with --dry-run" -c "$config" --follow --dry-run
expect_usage_error "has no CronJob named nightly" -c "$config" --cronjob nightly --dry-run
printf 'train: [\n' > "$work/broken.yaml"
expect_usage_error "is not valid YAML" -c "$work/broken.yaml" --dry-run
printf -- '- a list\n' > "$work/list.yaml"
expect_usage_error "is not a YAML mapping" -c "$work/list.yaml" --dry-run
head -c 1100000 /dev/zero | tr '\0' '#' > "$work/huge.yaml"
expect_usage_error "larger than a ConfigMap can hold" -c "$work/huge.yaml" --dry-run

# A password in a URI would be stored in the cluster with the Job or the
# ConfigMap, so it is rejected, and the message does not repeat it.
expect_password_error() {
    expect_usage_error "$@"
    if grep -qF "s3cret" "$work/usage.err"; then
        fail "jobs/submit ${*:2} printed the password: $(cat "$work/usage.err")"
    fi
}
expect_password_error "invalid --set registry.uri: the URI contains a password" \
    -c "$config" --set 'registry.uri=http://u:s3cret@127.0.0.1' --dry-run
expect_password_error "invalid --set: the URI contains a password" \
    -c "$config" --set 'Registry.URI=http://u:s3cret@127.0.0.1' --dry-run
expect_password_error "invalid --set store.endpoint: the URI contains a password" \
    -c "$config" --set 'store.endpoint=[http://127.0.0.1, https://u:s3cret@127.0.0.1:9000/b]' \
    --dry-run
sed 's|^  uri: .*|  uri: "http://apiary:s3cret@127.0.0.1:5000"|' "$config" > "$work/password.yaml"
grep -q "s3cret" "$work/password.yaml" || fail "could not put a password into the test config"
expect_password_error "config file $work/password.yaml: the value of registry.uri contains a URI" \
    -c "$work/password.yaml" --dry-run
# A user name alone, and an '@' after the host, are no password.
"$submit" -c "$config" --set 'registry.uri=http://apiary@127.0.0.1:5000/a@b:c' --dry-run \
    > "$work/user.yaml" 2> "$work/user.err" ||
    { cat "$work/user.err"; fail "jobs/submit rejected a URI with a user name and no password"; }

# Before it prints or submits anything, jobs/submit checks the config and the
# overrides with apiary config show and stops with apiary's message.
expect_usage_error "apiary: invalid config: --set bogus.key: unknown key" \
    -c "$config" --set bogus.key=1 --dry-run
grep -qF "the config or an override is invalid ($APIARY config show exited with code 2)" \
    "$work/usage.err" || { cat "$work/usage.err"; fail "jobs/submit did not name the failed check"; }
expect_usage_error "--set train.epochs: 'forty' is not an integer" \
    -c "$config" --set train.epochs=forty --dry-run
if grep -qF "stand-in" "$work/usage.err"; then
    fail "jobs/submit blamed the stand-in values for an invalid override: $(cat "$work/usage.err")"
fi
# A variable the cluster sets gets a stand-in value. When the config fails
# with it, the message names that variable.
env -u APIARY_DATA_URI "$submit" -c "$config" --dry-run > /dev/null 2> "$work/stand-in.err" ||
    { cat "$work/stand-in.err"; fail "jobs/submit needs APIARY_DATA_URI to check the config"; }
printf 'data:\n  root: s3://bucket/data\n  labels: [wasps]\n  width: "${APIARY_TEST_WIDTH}"\n' \
    > "$work/width.yaml"
env -u APIARY_TEST_WIDTH "$submit" -c "$work/width.yaml" --dry-run > /dev/null 2> "$work/width.err" &&
    fail "jobs/submit accepted data.width 'stand-in-for-APIARY_TEST_WIDTH'"
grep -qF "stand-in values for APIARY_TEST_WIDTH because they are unset here" "$work/width.err" ||
    { cat "$work/width.err"; fail "jobs/submit did not name the stand-in value of the failed check"; }
APIARY_TEST_WIDTH=64 "$submit" -c "$work/width.yaml" --dry-run > /dev/null 2> "$work/width.err" ||
    { cat "$work/width.err"; fail "jobs/submit did not use APIARY_TEST_WIDTH from the environment"; }
APIARY="$work/none" expect_usage_error "APIARY=$work/none is not an executable file" \
    -c "$config" --dry-run

# The check runs $APIARY, else apiary on PATH, else build/apiary of the
# checkout, with the environment of the Job's pod: the values the template
# sets, the Job's name, and stand-ins for the rest. A stand-in apiary records
# its arguments and those variables.
mkdir -p "$work/fake"
cat > "$work/fake/apiary" <<'EOF'
#!/usr/bin/env bash
{
    printf '%s\n' "$@"
    for name in APIARY_DATA_URI APIARY_MLFLOW_CACHE APIARY_OUTPUT_DIR APIARY_RUN_NAME; do
        echo "$name=${!name-unset}"
    done
} > "$FAKE_APIARY_LOG"
EOF
chmod +x "$work/fake/apiary"
expected_check="config
show
-c
$config
--set
run_name=apiary-manual-check
--set
train.epochs=40
APIARY_DATA_URI=stand-in-for-APIARY_DATA_URI
APIARY_MLFLOW_CACHE=/var/cache/apiary/mlflow
APIARY_OUTPUT_DIR=/var/lib/apiary/runs
APIARY_RUN_NAME=apiary-manual-check"
run_check() {
    rm -f "$work/check.log"
    env -u APIARY_DATA_URI -u APIARY_OUTPUT_DIR -u APIARY_RUN_NAME -u APIARY_MLFLOW_CACHE \
        -u APIARY_THREADS -u APIARY_REGISTRY_URI FAKE_APIARY_LOG="$work/check.log" "$@" \
        -c "$config" --name apiary-manual-check --set train.epochs=40 --dry-run \
        > "$work/check.out" 2> "$work/check.err" ||
        { cat "$work/check.err"; fail "jobs/submit failed with a stand-in apiary"; }
    [ -f "$work/check.log" ] || fail "$* did not run the stand-in apiary"
    [ "$(cat "$work/check.log")" = "$expected_check" ] ||
        fail "the check ran $(cat "$work/check.log"), expected $expected_check"
}
run_check env APIARY="$work/fake/apiary" "$submit"
run_check env -u APIARY PATH="$work/fake:$PATH" "$submit"
# Without APIARY and apiary on PATH, from a copy of the checkout with
# build/apiary, and then without any apiary.
mkdir -p "$work/checkout/jobs/base" "$work/checkout/build"
cp "$submit" "$src/jobs/config-keys.txt" "$work/checkout/jobs/"
cp "$src/jobs/base/nightly-cronjob.yaml" "$work/checkout/jobs/base/"
cp "$work/fake/apiary" "$work/checkout/build/apiary"
no_apiary_path="$work/nothing:/usr/local/bin:/usr/bin:/bin"
PATH="$no_apiary_path" command -v apiary > /dev/null &&
    skip "an apiary on $no_apiary_path hides the case without one"
run_check env -u APIARY PATH="$no_apiary_path" "$work/checkout/jobs/submit"
rm "$work/checkout/build/apiary"
without_apiary=(env -u APIARY PATH="$no_apiary_path" "$work/checkout/jobs/submit" -c "$config")
"${without_apiary[@]}" --set train.epochs=forty --set gate.rules=x --dry-run \
    > "$work/unchecked.out" 2> "$work/unchecked.err" ||
    { cat "$work/unchecked.err"; fail "jobs/submit without apiary rejected known keys"; }
grep -qF "warning: found no apiary binary" "$work/unchecked.err" ||
    { cat "$work/unchecked.err"; fail "jobs/submit without apiary did not warn"; }
grep -qF "train.epochs=forty" "$work/unchecked.out" ||
    fail "jobs/submit without apiary printed no manifests"
set +e
"${without_apiary[@]}" --set bogus.key=1 --dry-run > "$work/unchecked.out" 2> "$work/unchecked.err"
code=$?
set -e
[ "$code" -eq 2 ] || fail "jobs/submit without apiary exited with $code on an unknown key, expected 2"
grep -qF "invalid --set bogus.key: unknown config key" "$work/unchecked.err" ||
    { cat "$work/unchecked.err"; fail "jobs/submit without apiary accepted --set bogus.key"; }

# jobs/config-keys.txt, which the check without apiary reads, lists the keys of this apiary.
"$APIARY" config keys | awk 'NR > 1 && /^[^ ]/ {print $1}' > "$work/keys.txt"
[ "$(wc -l < "$work/keys.txt")" -ge 50 ] ||
    fail "apiary config keys listed $(wc -l < "$work/keys.txt") keys, expected 50 or more"
diff -u "$src/jobs/config-keys.txt" "$work/keys.txt" ||
    fail "jobs/config-keys.txt differs from apiary config keys; rewrite it with" \
        "build/apiary config keys | awk 'NR > 1 && /^[^ ]/ {print \$1}' > jobs/config-keys.txt"

# A submission against a stand-in kubectl that serves the base CronJob as
# JSON, records every call in calls.log and plays a Job whose pod fails with
# exit code 3 (the gate) or succeeds, as FAKE_OUTCOME selects.
"$python" -c 'import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
print(json.dumps([d for d in docs if d["kind"] == "CronJob"][0]))' \
    "$src/jobs/base/nightly-cronjob.yaml" > "$work/cronjob.json"
mkdir -p "$work/bin"
cat > "$work/bin/kubectl" <<'EOF'
#!/usr/bin/env bash
state=$FAKE_STATE
echo "$*" >> "$state/calls.log"
file=""
previous=""
for arg in "$@"; do
    [ "$previous" = "-f" ] && file=$arg
    previous=$arg
done
args=" $* "
case "$args" in
*" get cronjob apiary-nightly -o json "*) cat "$state/cronjob.json" ;;
*" apply -f "*) cp "$file" "$state/applied.yaml" ;;
*" create -f "*) cp "$file" "$state/created.yaml"; printf 'uid-1234' ;;
*" patch configmap "*) ;;
*" get job "*)
    count=$(cat "$state/polls" 2> /dev/null || echo 0)
    echo $((count + 1)) > "$state/polls"
    if [ "$count" -ge 1 ]; then
        [ "$FAKE_OUTCOME" = fail ] && printf 'FailureTarget\nFailed\n' || printf 'Complete\n'
    fi
    ;;
*" get pods "*) printf 'apiary-manual-fake-x1' ;;
*"jsonpath={.status.phase}"*) [ "$FAKE_OUTCOME" = fail ] && printf Failed || printf Succeeded ;;
*"exitCode}"*) printf '3' ;;
*" logs -f "*) echo "apiary log line" ;;
*) echo "stand-in kubectl: unexpected call: $*" >&2; exit 1 ;;
esac
EOF
chmod +x "$work/bin/kubectl"
run_fake() {
    local outcome=$1
    shift
    rm -rf "$work/state" && mkdir -p "$work/state"
    cp "$work/cronjob.json" "$work/state/cronjob.json"
    set +e
    PATH="$work/bin:$PATH" FAKE_STATE="$work/state" FAKE_OUTCOME="$outcome" \
        "$submit" -c "$config" -n apiary "$@" > "$work/submit.out" 2> "$work/submit.err"
    code=$?
    set -e
}

run_fake pass --name apiary-manual-live --set train.epochs=3
[ "$code" -eq 0 ] || { cat "$work/submit.err"; fail "a submission exited with $code"; }
[ "$(cat "$work/submit.out")" = apiary-manual-live ] || fail "jobs/submit did not print the Job name"
grep -q '^--namespace apiary get cronjob apiary-nightly -o json$' "$work/state/calls.log" ||
    fail "jobs/submit did not read the CronJob from the namespace"
[ "$(grep -c -e ' apply -f ' -e ' create -f ' "$work/state/calls.log")" -eq 2 ] ||
    fail "jobs/submit did not create both the ConfigMap and the Job"
grep -n -e ' apply -f ' -e ' create -f ' "$work/state/calls.log" | head -n 1 | grep -q ' apply -f ' ||
    fail "jobs/submit created the Job before its ConfigMap"
grep -q 'patch configmap apiary-manual-live-config --type merge -p .*"uid":"uid-1234"' \
    "$work/state/calls.log" || fail "the ConfigMap does not get the Job as its owner"
grep -q 'train.epochs=3' "$work/state/created.yaml" || fail "the created Job lacks the override"

run_fake fail --name apiary-manual-gate --follow
[ "$code" -eq 3 ] || { cat "$work/submit.err"; fail "--follow of a failed Job exited with $code, expected 3"; }
grep -q "apiary log line" "$work/submit.out" || fail "--follow did not stream the pod's logs"
grep -q "Job apiary-manual-gate failed (apiary exit code 3)" "$work/submit.err" ||
    fail "--follow did not report the failure"

run_fake pass --name apiary-manual-ok --follow
[ "$code" -eq 0 ] || { cat "$work/submit.err"; fail "--follow of a Job that succeeded exited with $code"; }
grep -q "Job apiary-manual-ok succeeded" "$work/submit.err" || fail "--follow did not report success"
echo "PASS"
