#!/usr/bin/env python3
"""Write small images whose headers claim huge dimensions, for tests.

    make_bomb_images.py FOLDER SMALL_JPEG

Writes into FOLDER:
  bomb.png       a valid PNG header for 100000 x 100000 RGB pixels (30 GB
                 decoded) with one compressed row of data, a few hundred bytes
  zlib_bomb.png  a complete 5000 x 5000 RGB PNG of zeros (75 MB decoded)
                 that compresses to under 100 KB
  bomb.jpg       SMALL_JPEG with its frame header changed to 65000 x 65000
A decoder that allocates from the header before checking a limit needs
gigabytes for these; one that checks first rejects them at once.
"""

import struct
import sys
import zlib


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(width, height, rows):
    """Return an 8-bit RGB PNG with the given dimensions and `rows` rows of zeros."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    data = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) +
            chunk(b"IEND", b""))


def resize_jpeg(jpeg, width, height):
    """Return jpeg with the dimensions in its first start-of-frame marker replaced."""
    position = 2
    while position + 4 <= len(jpeg):
        marker, length = jpeg[position + 1], struct.unpack(">H", jpeg[position + 2:position + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            patched = bytearray(jpeg)
            patched[position + 5:position + 9] = struct.pack(">HH", height, width)
            return bytes(patched)
        position += 2 + length
    raise ValueError("no start-of-frame marker in the JPEG")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    folder, small = sys.argv[1], sys.argv[2]
    with open(f"{folder}/bomb.png", "wb") as out:
        out.write(png(100000, 100000, 1))
    with open(f"{folder}/zlib_bomb.png", "wb") as out:
        out.write(png(5000, 5000, 5000))
    with open(small, "rb") as source, open(f"{folder}/bomb.jpg", "wb") as out:
        out.write(resize_jpeg(source.read(), 65000, 65000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
