#!/usr/bin/env python3
"""HTTP proxy on 127.0.0.1 that breaks S3 traffic on purpose, for tests.

Requests go to --upstream unchanged (the Host header too, so signatures
still verify) unless a rule acts on them. A rule is METHOD:TEXT:ACTION:COUNT[:SKIP]:
it matches requests with that method ("*" for any) whose path and query
contain TEXT, lets SKIP matches pass, then acts on the next COUNT. Actions:

  drop      close the connection without a reply
  stall     send nothing for --stall-seconds, then close
  500, 503  reply with that status and an S3 error document
  slowdown  reply 503 with the S3 error code SlowDown
  truncate  forward, then send the reply's headers and only half its body
  corrupt   forward, then flip one byte in the middle of the reply body

The first rule that acts on a request wins, and later rules do not see
that request. The proxy prints its port once it listens, appends
"METHOD PATH -> STATUS ACTION" per request to --log, and exits after
--lifetime seconds or when its parent process exits.
"""

import argparse
import http.client
import http.server
import os
import sys
import threading
import time
import urllib.parse

ACTIONS = ("drop", "stall", "500", "503", "slowdown", "truncate", "corrupt")
HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "proxy-connection")


class Rule:
    def __init__(self, text):
        parts = text.split(":")
        if len(parts) not in (4, 5) or parts[2] not in ACTIONS:
            raise ValueError(f"invalid rule {text!r}: use METHOD:TEXT:ACTION:COUNT[:SKIP]")
        self.method, self.text, self.action = parts[0], parts[1], parts[2]
        self.count = int(parts[3])
        self.skip = int(parts[4]) if len(parts) == 5 else 0
        self.seen = 0

    def take(self, method, path):
        if self.method not in ("*", method) or self.text not in urllib.parse.unquote(path):
            return None
        self.seen += 1
        return self.action if self.skip < self.seen <= self.skip + self.count else None


def error_document(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    rules = []
    upstream = None
    stall_seconds = 30.0
    log_file = None
    lock = threading.Lock()

    def log_message(self, format, *args):
        pass

    def record(self, status, action):
        with self.lock:
            self.log_file.write(f"{self.command} {self.path} -> {status} {action or 'forward'}\n")
            self.log_file.flush()

    def send_reply(self, status, headers, body, body_limit=None):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        # A reply to HEAD keeps the object's length that the upstream sent.
        if not (self.command == "HEAD" and any(n.lower() == "content-length" for n, _ in headers)):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if body_limit is None else body[:body_limit])
        self.wfile.flush()

    def forward(self, body):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                timeout=60)
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in HOP_BY_HOP}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        kept = [(name, value) for name, value in response.getheaders()
                if name.lower() not in HOP_BY_HOP and
                (name.lower() != "content-length" or self.command == "HEAD")]
        status = response.status
        connection.close()
        return status, kept, data

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else None
        with self.lock:
            action = next((a for a in (r.take(self.command, self.path) for r in self.rules) if a),
                          None)
        if action == "drop":
            self.record("-", action)
            self.close_connection = True
            return
        if action == "stall":
            self.record("-", action)
            time.sleep(self.stall_seconds)
            self.close_connection = True
            return
        if action in ("500", "503", "slowdown"):
            status = 500 if action == "500" else 503
            code = {"500": "InternalError", "503": "ServiceUnavailable"}.get(action, "SlowDown")
            self.record(status, action)
            self.send_reply(status, [("Content-Type", "application/xml")],
                            error_document(code, "injected fault"))
            return
        status, headers, data = self.forward(body)
        if action == "truncate" and len(data) > 1:
            self.record(status, action)
            self.send_reply(status, headers, data, body_limit=len(data) // 2)
            self.close_connection = True
            return
        if action == "corrupt" and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        self.record(status, action)
        self.send_reply(status, headers, data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def watch(parent, deadline):
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--rule", action="append", default=[], help="METHOD:TEXT:ACTION:COUNT[:SKIP]")
    parser.add_argument("--stall-seconds", type=float, default=30.0, help="how long stall waits")
    parser.add_argument("--log", default=os.devnull, help="file for one line per request")
    parser.add_argument("--lifetime", type=float, default=600, help="seconds before exiting")
    args = parser.parse_args()

    Proxy.rules = [Rule(text) for text in args.rule]
    Proxy.upstream = urllib.parse.urlsplit(args.upstream)
    Proxy.stall_seconds = args.stall_seconds
    Proxy.log_file = open(args.log, "a", encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    threading.Thread(target=watch, args=(os.getppid(), time.monotonic() + args.lifetime),
                     daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
