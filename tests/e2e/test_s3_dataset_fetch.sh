#!/usr/bin/env bash
# apiary dataset fetch against a loopback HTTP server: an archive in the
# BeeDataset layout is downloaded, the first transfer breaks off and is
# resumed with a Range request, size and SHA-256 are checked, the zip is
# unpacked and each images_* folder gets a labels.csv. Archives whose
# entries would leave the target folder are rejected.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir dataset-fetch)
samples="$data/raspbee-samples/images"
[ -d "$samples" ] || skip "no raspbee-samples images in $data"

# Archives: one in the BeeDataset layout, and three that try to escape.
python3 - "$work" "$samples" <<'PY'
import json, os, sys, zipfile
work, samples = sys.argv[1], sys.argv[2]
names = sorted(n for n in os.listdir(samples) if n.endswith((".jpg", ".jpeg")))[:6]
labels = {name: {"varroa": i % 2 == 0, "pollen": i % 3 == 0, "wasps": i == 5, "cooling": False}
          for i, name in enumerate(names)}
with zipfile.ZipFile(f"{work}/BeeDataset_test.zip", "w") as archive:
    archive.writestr("data.json", json.dumps(labels, indent=2))
    for size in ("300", "200", "150"):
        for name in names:
            archive.write(os.path.join(samples, name), f"images_{size}/{name}")
with zipfile.ZipFile(f"{work}/dotdot.zip", "w") as archive:
    archive.writestr("fine.txt", "ok")
    archive.writestr("../escaped.txt", "escaped")
with zipfile.ZipFile(f"{work}/absolute.zip", "w") as archive:
    archive.writestr(zipfile.ZipInfo("/tmp/apiary-absolute-escape.txt"), "escaped")
link = zipfile.ZipInfo("images_300/link")
link.external_attr = (0o120777 << 16)  # a symbolic link entry
with zipfile.ZipFile(f"{work}/symlink.zip", "w") as archive:
    archive.writestr(link, "/etc/passwd")
PY

# A server that honours Range and breaks off the first full download halfway.
coproc server { exec python3 - "$work" <<'PY'
import http.server, os, sys
work = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    broke = False
    def log_message(self, *args):
        with open(f"{work}/server.log", "a") as log:
            log.write(f"{self.command} {self.path} range={self.headers.get('Range')}\n")
    def do_GET(self):
        path = os.path.join(work, os.path.basename(self.path))
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
        if start == 0 and not Handler.broke and "BeeDataset" in self.path:
            Handler.broke = True
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
trap 'kill "$server_PID" 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port"
archive="$work/BeeDataset_test.zip"
sha=$(sha256sum "$archive" | cut -d' ' -f1)
size=$(stat -c %s "$archive")

"$APIARY" dataset fetch "$base/BeeDataset_test.zip" --to "$work/bee" --sha256 "$sha" \
    --size "$size" --set store.retries=3 > "$work/fetch.out" 2> "$work/fetch.err" ||
    { cat "$work/fetch.err"; fail "the fetch failed"; }
grep -q "range=bytes=" "$work/server.log" || fail "the broken download was not resumed with Range"
grep -q "19 files unpacked, 3 manifests written" "$work/fetch.out" ||
    { cat "$work/fetch.out"; fail "the archive was not unpacked as expected"; }
grep -q "^data.root: $work/bee/images_300$" "$work/fetch.out" || fail "data.root is not images_300"
manifest="$work/bee/images_300/labels.csv"
[ "$(head -n 1 "$manifest")" = "file,varroa,pollen,wasps,cooling" ] || fail "bad manifest header"
[ "$(wc -l < "$manifest")" -eq 7 ] || fail "the manifest does not have 6 rows"
first=$(ls "$work/bee/images_300" | grep -v '^labels.csv$' | LC_ALL=C sort | sed -n 1p)
grep -q "^$first,1,1,0,0$" "$manifest" || fail "the first image's labels are wrong"
cmp -s "$manifest" "$work/bee/images_150/labels.csv" || fail "images_150 has another manifest"

# Running it again does nothing.
"$APIARY" dataset fetch "$base/BeeDataset_test.zip" --to "$work/bee" --sha256 "$sha" \
    > "$work/again.out" 2>&1 || fail "the second fetch failed"
grep -q "already unpacked" "$work/again.out" || fail "the second fetch did the work again"

# A wrong checksum is an error, and the bad download is not kept: the target
# folder, which the fetch created, is gone.
set +e
"$APIARY" dataset fetch "$base/BeeDataset_test.zip" --to "$work/wrong" \
    --sha256 "$(printf '0%.0s' {1..64})" > "$work/wrong.out" 2> "$work/wrong.err"
code=$?
set -e
[ "$code" -eq 4 ] || fail "a wrong SHA-256 exited with $code, expected 4"
grep -q "SHA-256" "$work/wrong.err" || fail "the checksum error does not say SHA-256"
[ ! -e "$work/wrong" ] || fail "the wrong download was kept"

# Entries that would leave the folder are rejected, and nothing of the
# archive stays in the target folder.
for name in dotdot absolute symlink; do
    sha=$(sha256sum "$work/$name.zip" | cut -d' ' -f1)
    set +e
    "$APIARY" dataset fetch "$base/$name.zip" --to "$work/out-$name" --sha256 "$sha" \
        > "$work/$name.out" 2> "$work/$name.err"
    code=$?
    set -e
    [ "$code" -ne 0 ] || fail "the $name archive was unpacked"
    grep -qE "rejected|link" "$work/$name.err" || { cat "$work/$name.err"; fail "no clear error for $name"; }
    grep -q "archive .*$name.zip" "$work/$name.err" ||
        { cat "$work/$name.err"; fail "the error for $name does not name the archive"; }
    [ ! -e "$work/out-$name" ] || fail "the $name archive left files in its target folder"
done
[ ! -e "$work/escaped.txt" ] || fail "an archive entry escaped with .."
[ ! -e /tmp/apiary-absolute-escape.txt ] || fail "an archive entry escaped with an absolute path"

# An unknown name is a usage error.
set +e
"$APIARY" dataset fetch no-such-set --to "$work/none" > /dev/null 2> "$work/unknown.err"
code=$?
set -e
[ "$code" -eq 2 ] || fail "an unknown dataset exited with $code, expected 2"
echo "PASS"
