#!/usr/bin/env bash
# apiary dataset fetch and push with bad arguments and failing downloads,
# against a loopback HTTP server. A password inside a URI is rejected with
# exit code 2 before any request, and no output repeats it. A user name
# alone is masked in every message, on retries and redirects too. A missing
# or malformed --sha256, one that contradicts a built-in dataset, and an
# unsupported scheme exit with 2, and a failed
# download with 5, advising a rerun only where a rerun can succeed. A failed
# fetch leaves the target folder as it was, except for a partial download
# that a rerun resumes.
source "$(dirname "$0")/common.sh"
work=$(make_work_dir dataset-fetch-errors)
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sha_zeros=$(printf '0%.0s' {1..64})

python3 - "$work" << 'PY'
import sys, zipfile
work = sys.argv[1]
with zipfile.ZipFile(f"{work}/ok.zip", "w") as archive:
    archive.writestr("labels.csv", "file,wasp\na.jpg,1\n")
with zipfile.ZipFile(f"{work}/escape.zip", "w") as archive:
    archive.writestr("ok/labels.csv", "file,wasp\na.jpg,1\n")
    archive.writestr("../../escaped.txt", "escaped")
with zipfile.ZipFile(f"{work}/folder.zip", "w") as archive:
    archive.writestr("ok/labels.csv", "file,wasp\na.jpg,1\n")
    archive.writestr("new.txt", "new")
with open(f"{work}/drop.zip", "wb") as drop:
    drop.write(open(f"{work}/folder.zip", "rb").read())
PY
ok_sha=$(sha256sum "$work/ok.zip" | cut -d' ' -f1)

# A server with archives, a missing file, a file that always fails with 503,
# a redirect to a URL with a password, and drop.zip, whose first download
# breaks off halfway. Range requests get the rest of a file.
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

        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)

        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name == "drop.zip" and start == 0:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)
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
# A built-in name with another checksum is rejected before any request. The
# proxy on a closed loopback port keeps a regression from reaching the
# dataset's real host.
https_proxy="http://127.0.0.1:$closed_port" HTTPS_PROXY="http://127.0.0.1:$closed_port" \
    no_proxy="" NO_PROXY="" run builtin-sha dataset fetch beedataset --to "$work/builtin" \
    --sha256 "$sha_zeros" --set store.retries=0
[ "$code" -eq 2 ] || { cat "$work/builtin-sha.err"; fail "a built-in name with another --sha256: exit $code, expected 2"; }
grep -q "the built-in dataset beedataset has sha256 .*so leave them out" "$work/builtin-sha.err" ||
    { cat "$work/builtin-sha.err"; fail "the error does not say that a built-in name has its own sha256"; }
[ ! -e "$work/builtin" ] || fail "a rejected built-in fetch created its folder"
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

# ---- A failed fetch leaves the target folder as it was ----
# Print every path below $1 with its type and size, so that two listings
# differ when anything was added, removed or changed.
list_tree() {
    (cd "$1" && find . -printf '%y %s %p\n' | LC_ALL=C sort)
}

run escape dataset fetch "$base/escape.zip" --to "$work/escape" --sha256 \
    "$(sha256sum "$work/escape.zip" | cut -d' ' -f1)"
[ "$code" -eq 4 ] || { cat "$work/escape.err"; fail "an escaping archive: exit $code, expected 4"; }
grep -q "archive .*escape.zip" "$work/escape.err" ||
    { cat "$work/escape.err"; fail "the rejection does not name the archive"; }
grep -q "\.\./\.\./escaped.txt" "$work/escape.err" ||
    { cat "$work/escape.err"; fail "the rejection does not name the entry"; }
[ ! -e "$work/escaped.txt" ] && [ ! -e "$(dirname "$work")/escaped.txt" ] ||
    fail "an archive entry escaped with .."
[ ! -e "$work/escape" ] || { list_tree "$work/escape"; fail "a rejected archive left files behind"; }

# A folder with files of its own keeps exactly those.
mkdir -p "$work/kept/notes"
echo "mine" > "$work/kept/notes/mine.txt"
before=$(list_tree "$work/kept")
run escape-kept dataset fetch "$base/escape.zip" --to "$work/kept" --sha256 \
    "$(sha256sum "$work/escape.zip" | cut -d' ' -f1)"
[ "$code" -eq 4 ] || { cat "$work/escape-kept.err"; fail "an escaping archive: exit $code, expected 4"; }
[ "$(list_tree "$work/kept")" = "$before" ] ||
    { list_tree "$work/kept"; fail "a rejected archive changed a folder with files of its own"; }

# A file where the archive has a folder: nothing moves.
mkdir -p "$work/conflict"
echo "not a folder" > "$work/conflict/ok"
before=$(list_tree "$work/conflict")
run conflict dataset fetch "$base/folder.zip" --to "$work/conflict" --sha256 \
    "$(sha256sum "$work/folder.zip" | cut -d' ' -f1)"
[ "$code" -eq 4 ] || { cat "$work/conflict.err"; fail "a conflicting file: exit $code, expected 4"; }
grep -q "conflict/ok is a file" "$work/conflict.err" ||
    { cat "$work/conflict.err"; fail "the conflict error does not name the file"; }
[ "$(list_tree "$work/conflict")" = "$before" ] ||
    { list_tree "$work/conflict"; fail "a conflicting archive changed the folder"; }

run wrong-sha dataset fetch "$base/ok.zip" --to "$work/wrong-sha" --sha256 "$sha_zeros"
[ "$code" -eq 4 ] || { cat "$work/wrong-sha.err"; fail "a wrong SHA-256: exit $code, expected 4"; }
[ ! -e "$work/wrong-sha" ] || { list_tree "$work/wrong-sha"; fail "a wrong SHA-256 left files behind"; }

run missing-nested dataset fetch "$base/missing.zip" --to "$work/nested/a/b" --sha256 "$sha_zeros"
[ "$code" -eq 5 ] || { cat "$work/missing-nested.err"; fail "HTTP 404: exit $code, expected 5"; }
[ ! -e "$work/nested" ] || { list_tree "$work/nested"; fail "HTTP 404 left folders behind"; }

# ---- An interrupted download is kept and resumed ----
drop_sha=$(sha256sum "$work/drop.zip" | cut -d' ' -f1)
run drop dataset fetch "$base/drop.zip" --to "$work/drop" --sha256 "$drop_sha" \
    --set store.retries=0
[ "$code" -eq 5 ] || { cat "$work/drop.err"; fail "a broken transfer: exit $code, expected 5"; }
grep -q "run the command again to resume" "$work/drop.err" ||
    { cat "$work/drop.err"; fail "a broken transfer: the error does not advise a rerun"; }
[ -s "$work/drop/.download/drop.zip.part" ] || fail "the partial download was not kept"
[ ! -e "$work/drop/ok" ] || fail "a broken transfer unpacked files"
run drop-again dataset fetch "$base/drop.zip" --to "$work/drop" --sha256 "$drop_sha"
[ "$code" -eq 0 ] || { cat "$work/drop-again.err"; fail "the rerun after a broken transfer failed"; }
grep -q "(resumed), 2 files unpacked" "$work/drop-again.out" ||
    { cat "$work/drop-again.out"; fail "the rerun did not resume the download"; }
[ -f "$work/drop/ok/labels.csv" ] || fail "the resumed archive was not unpacked"
[ ! -e "$work/drop/.download/drop.zip.part" ] || fail "the partial file remains after the rerun"
[ ! -e "$work/drop/.download/.unpack" ] || fail "the staging folder remains after success"
echo "PASS"
