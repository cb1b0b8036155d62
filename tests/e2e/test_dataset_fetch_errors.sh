#!/usr/bin/env bash
# apiary dataset fetch and push with bad arguments and failing downloads,
# against a loopback HTTP server. A password inside a URI is rejected with
# exit code 2 before any request, and no output repeats it. A user name
# alone is masked in every message, on retries and redirects too. A missing
# or malformed --sha256 and an unsupported scheme exit with 2, and a failed
# download with 5, advising a rerun only where a rerun can succeed.
source "$(dirname "$0")/common.sh"
work=$(make_work_dir dataset-fetch-errors)
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sha_zeros=$(printf '0%.0s' {1..64})

python3 - "$work" << 'PY'
import sys, zipfile
work = sys.argv[1]
with zipfile.ZipFile(f"{work}/ok.zip", "w") as archive:
    archive.writestr("labels.csv", "file,wasp\na.jpg,1\n")
PY
ok_sha=$(sha256sum "$work/ok.zip" | cut -d' ' -f1)

# A server with an archive, a missing file, a file that always fails with
# 503 and a redirect to a URL with a password.
coproc server { exec python3 - "$work" << 'PY'
import http.server, os, sys
work = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        name = os.path.basename(self.path)
        if name == "unavailable.zip":
            self.send_error(503)
            return
        if name == "redirect.zip":
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", f"http://eve:redirPW@127.0.0.1:{port}/ok.zip")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = os.path.join(work, name)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
}
read -r port <&"${server[0]}"
trap 'kill "$server_PID" 2> /dev/null || true' EXIT
base="http://127.0.0.1:$port"

# Run apiary with the arguments after $1, which names the output files
# $work/$1.out and $work/$1.err. The exit code goes to $code.
run() {
    local name=$1
    shift
    code=0
    "$APIARY" "$@" > "$work/$name.out" 2> "$work/$name.err" || code=$?
}

# Fail when $2 appears in the output of run $1.
expect_hidden() {
    if grep -q -- "$2" "$work/$1.out" "$work/$1.err"; then
        cat "$work/$1.err"
        fail "$1: the output contains $2"
    fi
}

# ---- A password inside a URI ----
run fetch-password dataset fetch 'https://bob:s3cretPW@127.0.0.1:9/x.zip' --to "$work/password" \
    --sha256 "$sha_zeros" --set store.retries=1
[ "$code" -eq 2 ] || { cat "$work/fetch-password.err"; fail "fetch with a password: exit $code, expected 2"; }
expect_hidden fetch-password s3cretPW
grep -q "contains a password" "$work/fetch-password.err" ||
    { cat "$work/fetch-password.err"; fail "fetch with a password: no clear error"; }
grep -q "AWS_ACCESS_KEY_ID" "$work/fetch-password.err" ||
    { cat "$work/fetch-password.err"; fail "fetch with a password: no advice on credentials"; }
[ ! -e "$work/password" ] || fail "fetch with a password created its target folder"

mkdir -p "$work/push-source"
echo "a" > "$work/push-source/a.txt"
run push-password dataset push "$work/push-source" 's3://bob:s3cretPW@bucket/x' \
    --set store.endpoint="http://127.0.0.1:$closed_port" --set store.retries=0
[ "$code" -eq 2 ] || { cat "$work/push-password.err"; fail "push with a password: exit $code, expected 2"; }
expect_hidden push-password s3cretPW
grep -q "contains a password" "$work/push-password.err" ||
    { cat "$work/push-password.err"; fail "push with a password: no clear error"; }

# ---- A user name alone is masked in every message ----
user="tok3nUser"
run fetch-retry dataset fetch "http://$user@127.0.0.1:$port/unavailable.zip" --to "$work/retry" \
    --sha256 "$sha_zeros" --set store.retries=1
[ "$code" -ne 0 ] || fail "a download that always gets 503 succeeded"
grep -q "WARN.*retrying" "$work/fetch-retry.err" ||
    { cat "$work/fetch-retry.err"; fail "the 503 was not retried"; }
expect_hidden fetch-retry "$user"
grep -q "http://\*\*\*@127.0.0.1:$port/unavailable.zip" "$work/fetch-retry.err" ||
    { cat "$work/fetch-retry.err"; fail "the error does not show the masked URL"; }

run fetch-missing dataset fetch "http://$user@127.0.0.1:$port/missing.zip" --to "$work/missing" \
    --sha256 "$sha_zeros"
[ "$code" -ne 0 ] || fail "a download of a missing file succeeded"
expect_hidden fetch-missing "$user"

run fetch-redirect dataset fetch "$base/redirect.zip" --to "$work/redirect" --sha256 "$ok_sha"
[ "$code" -ne 0 ] || fail "a redirect to plain http:// was followed"
expect_hidden fetch-redirect redirPW
expect_hidden fetch-redirect eve

run fetch-user dataset fetch "http://$user@127.0.0.1:$port/ok.zip" --to "$work/user" \
    --sha256 "$ok_sha"
[ "$code" -eq 0 ] || { cat "$work/fetch-user.err"; fail "fetch with a user name: exit $code"; }
expect_hidden fetch-user "$user"
grep -q "1 files unpacked" "$work/fetch-user.out" ||
    { cat "$work/fetch-user.out"; fail "fetch with a user name did not unpack the archive"; }
[ -f "$work/user/.download/ok.zip" ] || fail "the archive is not stored as .download/ok.zip"
if grep -rq "$user" "$work/user"; then
    fail "a file in the target folder contains the user name"
fi

run push-user dataset push "$work/push-source" "s3://$user@bucket/x" \
    --set store.endpoint="http://127.0.0.1:$closed_port" --set store.retries=0
[ "$code" -ne 0 ] || fail "push to an s3:// URI with a user name succeeded"
expect_hidden push-user "$user"
grep -q "takes no user name" "$work/push-user.err" ||
    { cat "$work/push-user.err"; fail "push with a user name: no clear error"; }

# ---- Invalid arguments exit with 2 and name what is accepted ----
run no-sha dataset fetch "$base/ok.zip" --to "$work/no-sha"
[ "$code" -eq 2 ] || { cat "$work/no-sha.err"; fail "fetch without --sha256: exit $code, expected 2"; }
grep -q -- "--sha256 HEX" "$work/no-sha.err" ||
    { cat "$work/no-sha.err"; fail "fetch without --sha256: the error does not name --sha256"; }
run bad-sha dataset fetch "$base/ok.zip" --to "$work/bad-sha" --sha256 abc123
[ "$code" -eq 2 ] || { cat "$work/bad-sha.err"; fail "a malformed --sha256: exit $code, expected 2"; }
grep -q "64 hex digits" "$work/bad-sha.err" ||
    { cat "$work/bad-sha.err"; fail "a malformed --sha256: the error does not say what is expected"; }
for url in "ftp://127.0.0.1:$port/ok.zip" "file://$work/ok.zip"; do
    run scheme dataset fetch "$url" --to "$work/scheme" --sha256 "$ok_sha"
    [ "$code" -eq 2 ] || { cat "$work/scheme.err"; fail "$url: exit $code, expected 2"; }
    grep -q "use https://" "$work/scheme.err" ||
        { cat "$work/scheme.err"; fail "$url: the error does not name the accepted schemes"; }
done

# ---- Failed downloads exit with 5 ----
run not-found dataset fetch "$base/missing.zip" --to "$work/not-found" --sha256 "$sha_zeros"
[ "$code" -eq 5 ] || { cat "$work/not-found.err"; fail "HTTP 404: exit $code, expected 5"; }
grep -q "HTTP 404" "$work/not-found.err" ||
    { cat "$work/not-found.err"; fail "HTTP 404: the error does not name the status"; }
grep -q "check the URL" "$work/not-found.err" ||
    { cat "$work/not-found.err"; fail "HTTP 404: the error does not say to check the URL"; }
if grep -q "resume" "$work/not-found.err"; then
    cat "$work/not-found.err"
    fail "HTTP 404: the error advises a rerun, which cannot fix it"
fi
[ "$(grep -c WARN "$work/not-found.err")" -eq 0 ] || fail "HTTP 404 was retried"

run unavailable dataset fetch "$base/unavailable.zip" --to "$work/unavailable" \
    --sha256 "$sha_zeros" --set store.retries=1
[ "$code" -eq 5 ] || { cat "$work/unavailable.err"; fail "HTTP 503: exit $code, expected 5"; }
grep -q "HTTP 503" "$work/unavailable.err" ||
    { cat "$work/unavailable.err"; fail "HTTP 503: the error does not name the status"; }
grep -q "after 2 attempts.*run the command again to resume" "$work/unavailable.err" ||
    { cat "$work/unavailable.err"; fail "HTTP 503: the error does not advise a rerun"; }
echo "PASS"
