#!/usr/bin/env bash
# apiary report render turns the example report into Markdown and one HTML
# page, and headless Chromium draws that page: the screenshot has the red
# verdict banner and the blue chart curves, and the DOM has the verdict, three
# <svg> charts per label and no <script> element from the label names.
source "$(dirname "$0")/common.sh"
fixture="$APIARY_SOURCE_DIR/tests/fixtures/report_example.json"

if ! "$APIARY" report --help > /dev/null 2>&1; then
    skip "$APIARY has no report command"
fi
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || skip "chromium is not installed (Debian package chromium)"

work=$(make_work_dir report-chromium)
"$APIARY" report render --input "$fixture" --html "$work/report.html" \
    --markdown "$work/report.md" 2> "$work/render.err" ||
    { cat "$work/render.err"; fail "report render failed"; }
[ -s "$work/report.html" ] || fail "report render wrote no HTML"
head -n 1 "$work/report.md" | grep -q '^\*\*FAILED\*\*: rule `wasps.recall.lower >= 0.9`' ||
    fail "the Markdown does not start with the verdict: $(head -n 1 "$work/report.md")"

# Chromium opens only this local file. The flags turn off its own background
# traffic (updates, sync, extensions), and the page's content security policy
# forbids every load. Chromium needs --no-sandbox to run as root, as test
# containers often do.
url=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' \
    "$work/report.html")
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --disable-extensions --disable-default-apps --user-data-dir="$work/profile")

timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size=1200,4000 \
    --screenshot="$work/report.png" "$url" > "$work/screenshot.log" 2>&1 ||
    { cat "$work/screenshot.log"; fail "chromium could not take a screenshot"; }
[ -s "$work/report.png" ] || { cat "$work/screenshot.log"; fail "no screenshot written"; }

# Decode the PNG with the standard library only and count colours. The
# window is tall enough to show the charts of the first label.
python3 - "$work/report.png" << 'PY' || fail "the screenshot does not look like the report"
import collections
import struct
import sys
import zlib


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def unfilter(kind, line, previous, channels):
    if kind == 1:
        for x in range(channels, len(line)):
            line[x] = (line[x] + line[x - channels]) & 255
    elif kind == 2:
        line = bytearray((u + v) & 255 for u, v in zip(line, previous))
    elif kind == 3:
        for x in range(len(line)):
            left = line[x - channels] if x >= channels else 0
            line[x] = (line[x] + ((left + previous[x]) >> 1)) & 255
    elif kind == 4:
        for x in range(len(line)):
            left = line[x - channels] if x >= channels else 0
            corner = previous[x - channels] if x >= channels else 0
            line[x] = (line[x] + paeth(left, previous[x], corner)) & 255
    return line


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("not a PNG file")
    position, compressed, header = 8, [], None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        sys.exit("unsupported PNG layout: depth %d, colour type %d" % (depth, color))
    raw = zlib.decompress(b"".join(compressed))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous,
                        channels)
        rows.append(line)
        previous = line
    return width, height, channels, rows


def near(pixel, target):
    return all(abs(p - t) <= 6 for p, t in zip(pixel, target))


width, height, channels, rows = read_png(sys.argv[1])
colours = collections.Counter()
for line in rows:
    colours.update(bytes(line[x:x + 3]) for x in range(0, len(line), channels))
banner = sum(n for pixel, n in colours.items() if near(pixel, (0xCF, 0x22, 0x2E)))
curve = sum(n for pixel, n in colours.items() if near(pixel, (0x09, 0x69, 0xDA)))
print("screenshot %dx%d: %d colours, %d banner pixels, %d curve pixels"
      % (width, height, len(colours), banner, curve))
problems = []
if (width, height) != (1200, 4000):
    problems.append("size %dx%d, expected 1200x4000" % (width, height))
if len(colours) < 50:
    problems.append("only %d colours: the page is blank or unstyled" % len(colours))
# The banner is about 1080 x 190 px, so a visible banner gives far more than 20000 pixels.
if banner < 20000:
    problems.append("%d pixels of the red verdict banner, expected at least 20000" % banner)
if curve < 200:
    problems.append("%d pixels of chart curves, expected at least 200" % curve)
if problems:
    sys.exit("; ".join(problems))
PY

timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" > "$work/dom.html" 2> "$work/dom.log" ||
    { cat "$work/dom.log"; fail "chromium could not dump the DOM"; }
charts_expected=$(python3 -c '
import json, sys
report = json.load(open(sys.argv[1]))
results = report["test"]["labels"]
print(3 * sum(1 for label in report["labels"] if label in results))' "$fixture")
charts=$(grep -o "<svg" "$work/dom.html" | wc -l)
[ "$charts" -eq "$charts_expected" ] ||
    fail "the DOM has $charts <svg> elements, expected $charts_expected"
grep -q "<h1>FAILED</h1>" "$work/dom.html" || fail "the DOM has no FAILED verdict"
if grep -qi "<script" "$work/dom.html"; then
    fail "the DOM has a <script> element: a label name was not escaped"
fi
grep -q "cooling &lt;script&gt;" "$work/dom.html" || fail "the escaped label is missing"
echo "PASS"
