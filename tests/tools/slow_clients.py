#!/usr/bin/env python3
"""Overload apiary serve on loopback with slow and eager clients, for tests.

    slow_clients.py --port PORT --image FILE [--slow N] [--holders N]
                    [--eager N] [--seconds S]

For S seconds (default 8) at once:
  - N slow clients (default 1500, slowloris style) each open a connection
    and send the headers of a prediction request one byte per 0.1 s, never
    finishing them (at most half the hard open-file limit);
  - N holders (default 4) send whole headers of /v1/predict and then the
    image body slowly, so each keeps a request slot for about 2 s;
  - N eager clients (default 6) post the image in a loop and count the
    replies: 200, 503 with a Retry-After header, and anything else;
  - a prober requests /v2/health/live and /v2/health/ready every 0.25 s with a
    2 s timeout.
Then the slow clients close, and one more prediction must succeed within 10
s. Only 127.0.0.1 is ever contacted.

Prints one JSON object with the counts and latencies, and exits 1 with a
"FAIL: ..." line per failed expectation: every health probe answered 200,
some eager requests shed with 503 and Retry-After, no other status, and the
prediction after the load answered 200.
"""

import argparse
import http.client
import json
import resource
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """Send one request on a new connection and return (status, headers, seconds)."""
    start = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        reply.read()
        return reply.status, dict(reply.getheaders()), time.monotonic() - start
    finally:
        connection.close()


def slow_headers(port, count, deadline, stats):
    """Keep count connections sending request headers one byte per tick."""
    text = (f"POST /v1/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: image/jpeg\r\nX-Padding: " + "a" * 4000).encode()
    sockets = []
    for _ in range(count):
        try:
            sockets.append([socket.create_connection((HOST, port), timeout=2), 0])
        except OSError:
            stats["slow_connect_failed"] += 1
    stats["slow_connected"] = len(sockets)
    while time.monotonic() < deadline:
        for entry in sockets:
            sock, sent = entry
            if sock is None or sent >= len(text):
                continue
            try:
                sock.send(text[sent:sent + 1])
                entry[1] += 1
            except OSError:
                stats["slow_closed_by_server"] += 1
                sock.close()
                entry[0] = None
        time.sleep(0.1)
    for sock, _ in sockets:
        if sock is not None:
            sock.close()


def hold_slot(port, image, deadline, stats):
    """Send a prediction whose body arrives over about 2 s, again and again."""
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection((HOST, port), timeout=10)
            sock.sendall((f"POST /v1/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                          f"Content-Type: image/jpeg\r\nContent-Length: {len(image)}\r\n"
                          "Connection: close\r\n\r\n").encode())
            step = max(1, len(image) // 20)
            for offset in range(0, len(image), step):
                sock.sendall(image[offset:offset + step])
                time.sleep(0.1)
            reply = sock.recv(64).decode(errors="replace")
            sock.close()
            status = reply.split(" ")[1] if reply.startswith("HTTP/") else "none"
            with stats["lock"]:
                stats["holder_status"][status] = stats["holder_status"].get(status, 0) + 1
        except OSError:
            # A holder beyond the limit gets 503 before its body is sent,
            # and the server closes the connection under it.
            with stats["lock"]:
                stats["holder_errors"] += 1


def eager(port, image, deadline, stats):
    while time.monotonic() < deadline:
        try:
            status, headers, _ = request(port, "POST", "/v1/predict", image,
                                         {"Content-Type": "image/jpeg"})
        except OSError as error:
            with stats["lock"]:
                stats["eager_errors"].append(str(error))
            continue
        with stats["lock"]:
            if status == 503 and "Retry-After" in headers:
                stats["eager_shed"] += 1
            elif status == 200:
                stats["eager_ok"] += 1
            else:
                stats["eager_other"].append(status)
        if status == 503:
            time.sleep(0.05)


def probe(port, deadline, stats):
    while time.monotonic() < deadline:
        for path in ("/v2/health/live", "/v2/health/ready"):
            try:
                status, _, seconds = request(port, "GET", path, timeout=2.0)
            except OSError as error:
                status, seconds = f"error: {error}", 2.0
            stats["probes"] += 1
            stats["probe_max_seconds"] = max(stats["probe_max_seconds"], seconds)
            if status != 200:
                stats["probe_failures"].append(f"{path}: {status}")
        time.sleep(0.25)


def recover(port, image):
    """Return the status of the first successful prediction within 10 s."""
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        try:
            status, _, _ = request(port, "POST", "/v1/predict", image,
                                   {"Content-Type": "image/jpeg"})
        except OSError as error:
            status = f"error: {error}"
        if status == 200:
            break
        time.sleep(0.2)
    return status


def allow_sockets(wanted):
    """Raise the open-file limit for `wanted` sockets and return how many to open.

    The server runs under the same hard limit, so at most half of it goes
    to slow clients. More would test the limit, not the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * wanted + 100
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return wanted if soft == resource.RLIM_INFINITY else min(wanted, (soft - 100) // 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="apiary serve's port on 127.0.0.1")
    parser.add_argument("--image", required=True, help="JPEG file to post")
    parser.add_argument("--slow", type=int, default=1500, help="slow header connections")
    parser.add_argument("--holders", type=int, default=4, help="clients that hold a slot")
    parser.add_argument("--eager", type=int, default=6, help="clients posting in a loop")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the load")
    args = parser.parse_args()
    image = open(args.image, "rb").read()
    slow = allow_sockets(args.slow)
    if slow < args.slow:
        print(f"note: the open-file limit allows {slow} slow clients, not {args.slow}",
              file=sys.stderr)
        args.slow = slow

    stats = {"lock": threading.Lock(), "slow_connected": 0, "slow_connect_failed": 0,
             "slow_closed_by_server": 0, "holder_status": {}, "holder_errors": 0,
             "eager_ok": 0, "eager_shed": 0, "eager_other": [], "eager_errors": [],
             "probes": 0, "probe_failures": [], "probe_max_seconds": 0.0}
    deadline = time.monotonic() + args.seconds
    threads = [threading.Thread(target=slow_headers, args=(args.port, args.slow, deadline, stats))]
    threads += [threading.Thread(target=hold_slot, args=(args.port, image, deadline, stats))
                for _ in range(args.holders)]
    threads += [threading.Thread(target=eager, args=(args.port, image, deadline, stats))
                for _ in range(args.eager)]
    threads.append(threading.Thread(target=probe, args=(args.port, deadline, stats)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats["recovered_status"] = recover(args.port, image)
    del stats["lock"]
    print(json.dumps(stats, indent=1))

    failures = []
    if stats["probe_failures"]:
        failures.append(f"{len(stats['probe_failures'])} of {stats['probes']} health probes "
                        f"failed, first {stats['probe_failures'][0]}")
    if stats["eager_shed"] == 0:
        failures.append(f"no request was shed with 503 and Retry-After "
                        f"({stats['eager_ok']} got 200)")
    if stats["eager_other"] or stats["eager_errors"]:
        failures.append(f"eager clients got statuses {stats['eager_other'][:5]} and errors "
                        f"{stats['eager_errors'][:3]}, expected only 200 or 503")
    if stats["slow_connected"] < args.slow:
        failures.append(f"only {stats['slow_connected']} of {args.slow} slow clients connected")
    if stats["recovered_status"] != 200:
        failures.append(f"the prediction after the load got {stats['recovered_status']}, "
                        "expected 200")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
