#!/usr/bin/env bash
# docs/openapi.yaml against the running server. The documented paths and
# methods must be exactly the server's routes, and a real request must
# produce every documented status code except 500. Every response must have
# the documented content type, headers and body fields, checked by a minimal
# JSON schema check (types, required fields, enums, bounds, nullable, $ref).
source "$(dirname "$0")/common.sh"
data=$(data_dir)
python=""
for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import yaml' 2> /dev/null; then
        python=$candidate
        break
    fi
done
[ -n "$python" ] || skip "no Python with PyYAML (Debian package python3-yaml)"
work=$(make_work_dir serve-openapi)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
export APIARY_TEST_TOKEN="token-$RANDOM-$RANDOM"
common=(--set output_dir="$work" --set registry.uri="$work/registry")

: > "$work/serve.log" # the background job below creates it only once it runs
"$APIARY" serve -c "$config" "${common[@]}" --set serve.port=0 --set serve.watch_seconds=1 \
    --set serve.auth_token_env=APIARY_TEST_TOKEN --set serve.max_concurrent=1 \
    --set serve.max_images=2 2> "$work/serve.log" &
server_pid=$!
trap 'kill -KILL "$server_pid" 2> /dev/null || true' EXIT
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on .* port \([0-9]*\) .*/\1/p' "$work/serve.log" | sed -n 1p)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log"; fail "the server did not start"; }

# The checker runs this script to train and promote a model once it has
# seen the server without one. A failed gate does not matter here.
{
    printf '%q ' "$APIARY" run -c "$config" "${common[@]}" --set run_name=openapi
    printf '> %q 2>&1\n' "$work/run.out"
    printf '%q ' "$APIARY" promote -c "$config" "${common[@]}" --set run_name=openapi --force \
        --reason "openapi test model"
    printf '> %q 2>&1\n' "$work/promote.out"
} > "$work/train.sh"

"$python" - "$APIARY_SOURCE_DIR" "http://127.0.0.1:$port" "$work/train.sh" \
    "$data/wasp-trap/images" << 'EOF'
import base64, glob, http.client, json, os, re, subprocess, sys, threading, time, urllib.parse
import yaml

source_dir, base_url, train_script, image_dir = sys.argv[1:5]
spec = yaml.safe_load(open(os.path.join(source_dir, "docs/openapi.yaml")))
token = os.environ["APIARY_TEST_TOKEN"]
host = urllib.parse.urlsplit(base_url)
jpeg = open(sorted(glob.glob(os.path.join(image_dir, "*.jpg")))[0], "rb").read()
METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}
failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message, file=sys.stderr)


def node_ref(ref):
    assert ref.startswith("#/"), ref
    return ref[2:].split("/")


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node_ref(node["$ref"]):
            target = target[part]
        node = target
    return node


def check_schema(value, schema, where):
    """Return the ways value breaks schema (types, required, enum, bounds)."""
    schema = deref(schema)
    if value is None:
        return [] if schema.get("nullable") else [f"{where} is null"]
    problems = []
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where} is not an object"]
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where} lacks required field {name}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                problems += check_schema(item, properties[name], f"{where}.{name}")
            elif isinstance(extra, dict):
                problems += check_schema(item, extra, f"{where}.{name}")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{where} is not an array"]
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{where} has fewer than {schema['minItems']} items")
        for index, item in enumerate(value):
            problems += check_schema(item, schema.get("items", {}), f"{where}[{index}]")
    elif kind == "string" and not isinstance(value, str):
        problems.append(f"{where} is not a string")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{where} is not a boolean")
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        problems.append(f"{where} is not an integer")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where} is not a number")
        elif not schema.get("minimum", value) <= value <= schema.get("maximum", value):
            problems.append(f"{where} = {value} is out of its bounds")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where} = {value!r} is not one of {schema['enum']}")
    return problems


# ---- Routes: the spec's paths and methods are the server's route table ----
def normalise(path):
    return path.replace("{name}", "{model_name}").replace("{version}", "{model_version}")


table = open(os.path.join(source_dir, "pipeline/serve/server.c")).read()
implemented = {(normalise(path), method.lower())
               for path, method in re.findall(r'\{"(/[^"]*)", "([A-Z]+)"', table)}
documented = {(path, method) for path, item in spec["paths"].items()
              for method in item if method in METHODS}
for route in sorted(implemented - documented):
    fail(f"the server has {route[1].upper()} {route[0]}, which docs/openapi.yaml lacks")
for route in sorted(documented - implemented):
    fail(f"docs/openapi.yaml has {route[1].upper()} {route[0]}, which the server lacks")

# ---- Requests ----
exercised = set()  # (path template, method, status)


def send(method, template, status, path=None, body=None, content_type=None, auth=True,
         documented_as=None):
    """Send a request, check its status and check the response against the
    documentation of the operation documented_as (default: method)."""
    path = path or template.replace("{model_name}", "apiary-bees").replace("{model_version}", "1")
    documented_as = documented_as or method
    all_headers = {}
    if auth:
        all_headers["Authorization"] = "Bearer " + token
    if content_type:
        all_headers["Content-Type"] = content_type
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    connection.request(method.upper(), path, body=body, headers=all_headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    what = f"{method.upper()} {path} (expecting {status})"
    if response.status != status:
        fail(f"{what}: got {response.status}: {payload[:300]!r}")
        return None
    exercised.add((template, documented_as, str(status)))
    operation = spec["paths"].get(template, {}).get(documented_as)
    if operation is None:
        return None
    documented_response = operation["responses"].get(str(status))
    if documented_response is None:
        fail(f"{what}: status {status} is not documented")
        return None
    documented_response = deref(documented_response)
    for name in documented_response.get("headers", {}):
        if response.getheader(name) is None:
            fail(f"{what}: the documented header {name} is missing")
    content = documented_response.get("content", {})
    actual_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
    if actual_type not in content:
        fail(f"{what}: content type {actual_type!r} is not documented ({sorted(content)})")
        return None
    if actual_type != "application/json":
        return payload
    try:
        value = json.loads(payload)
    except ValueError as error:
        fail(f"{what}: the body is not JSON ({error})")
        return None
    for problem in check_schema(value, content[actual_type]["schema"], "body"):
        fail(f"{what}: {problem}")
    return value


def infer_body(name="image", datatype="BYTES", shape=None, data=None):
    if data is None:
        data = [base64.b64encode(jpeg).decode()]
    return json.dumps({"inputs": [{"name": name, "datatype": datatype,
                                   "shape": shape or [len(data)], "data": data}]})


predict = "/v1/predict"
model = "/v2/models/{model_name}"
version = "/v2/models/{model_name}/versions/{model_version}"
model_paths = [model, version]

# Without a model: readiness and inference are unavailable.
send("get", "/v2/health/live", 200, auth=False)
send("get", "/v2/health/ready", 503, auth=False)
send("post", predict, 503, body=jpeg, content_type="image/jpeg")
for base in model_paths:
    send("get", base, 503)
    send("get", base + "/ready", 503, auth=False)
    send("post", base + "/infer", 503, body=infer_body(), content_type="application/json")

subprocess.run(["bash", train_script], check=True)
for _ in range(150):
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    connection.request("GET", "/v2/health/ready")
    ready = connection.getresponse().status == 200
    connection.close()
    if ready:
        break
    time.sleep(0.1)

send("get", "/v2/health/ready", 200, auth=False)
send("get", "/v2", 200)
send("get", "/metrics", 200)
send("post", predict, 200, body=jpeg, content_type="image/jpeg")
send("post", predict, 400, body=b"", content_type="image/jpeg")
send("post", predict, 413, body=b"--b\r\n" + b"".join(
    b'Content-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n' + jpeg +
    b"\r\n--b\r\n" for _ in range(3))[:-2] + b"--\r\n",
    content_type="multipart/form-data; boundary=b")
send("post", predict, 415, body=jpeg, content_type="text/plain")
send("post", predict, 422, body=jpeg[:2000], content_type="image/jpeg")
for base in model_paths:
    infer = base + "/infer"
    send("get", base, 200)
    send("get", base + "/ready", 200, auth=False)
    send("get", base, 404, path=base.replace("{model_name}", "other")
         .replace("{model_version}", "1"))
    send("get", base + "/ready", 404, auth=False,
         path=(base + "/ready").replace("{model_name}", "other").replace("{model_version}", "1"))
    value = send("post", infer, 200, body=infer_body(), content_type="application/json")
    if value is not None and [o["shape"] for o in value["outputs"]] != [[1, 4], [1, 4]]:
        fail(f"{infer}: output shapes are {[o['shape'] for o in value['outputs']]}")
    send("post", infer, 200, content_type="application/json",
         body=infer_body("pixels", "UINT8", [1, 48, 48, 3], [7] * (48 * 48 * 3)))
    send("post", infer, 400, body=b'{"inputs": [', content_type="application/json")
    send("post", infer, 400, content_type="application/json",
         body=infer_body("pixels", "FP32", [1, 48, 48, 3], [0.5]))
    send("post", infer, 404, content_type="application/json", body=infer_body(),
         path=infer.replace("{model_name}", "other").replace("{model_version}", "1"))
    send("post", infer, 413, content_type="application/json",
         body=infer_body(data=[base64.b64encode(jpeg).decode()] * 3))
    send("post", infer, 415, body=infer_body(), content_type="text/plain")
    send("post", infer, 422, content_type="application/json",
         body=infer_body(data=[base64.b64encode(b"not an image").decode()]))
send("get", version, 404, path="/v2/models/apiary-bees/versions/9")

# Authentication: every documented 401.
for path, item in spec["paths"].items():
    for method, operation in item.items():
        if method in METHODS and "401" in operation["responses"]:
            body = b"{}" if method == "post" else None
            send(method, path, 401, auth=False, body=body, content_type="application/json")

# Every documented 405: a method the path does not take.
for path, item in spec["paths"].items():
    for method, operation in item.items():
        if method in METHODS and "405" in operation["responses"]:
            send("delete", path, 405, documented_as=method)

# The concurrency limit: a slow upload takes the only slot (serve.max_concurrent=1).
def slow_upload():
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    connection.putrequest("POST", predict)
    connection.putheader("Authorization", "Bearer " + token)
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(len(jpeg)))
    connection.endheaders()
    for start in range(0, len(jpeg), len(jpeg) // 20 + 1):
        connection.send(jpeg[start:start + len(jpeg) // 20 + 1])
        time.sleep(0.1)
    slow_status.append(connection.getresponse().status)


slow_status = []
holder = threading.Thread(target=slow_upload)
holder.start()
time.sleep(0.5)
send("get", "/v2", 503)
holder.join()
if slow_status != [200]:
    fail(f"the upload that held the slot got {slow_status}")

# Every documented status except 500 (a backend failure) was produced.
for path, item in spec["paths"].items():
    for method, operation in item.items():
        if method not in METHODS:
            continue
        for status in operation["responses"]:
            if status != "500" and (path, method, status) not in exercised:
                fail(f"{method.upper()} {path}: documented status {status} was never produced")

print(f"{len(exercised)} documented (path, method, status) cases checked")
sys.exit(1 if failures else 0)
EOF
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not exit cleanly"
echo "PASS"
