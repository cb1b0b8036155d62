#!/usr/bin/env python3
"""HTTP proxy on 127.0.0.1 that injects faults in front of a test server.

Every request goes to --upstream unless a rule matches it first. A rule is
METHOD:TEXT:ACTION:COUNT[:SKIP]: it matches requests with that method ("*"
for any) whose path contains TEXT, lets SKIP matches pass, then acts on the
next COUNT matches. Actions:

  fail     reply 500 without forwarding
  lose     forward, then reply 500 instead of the upstream reply
  throttle reply 429 with "Retry-After: 0" without forwarding
  corrupt  forward with the last byte of the body flipped, and relay the reply

Rules are tried in the order given; the first that acts on a request wins,
and the rules after it do not count that request.

With --expect-auth VALUE, requests whose Authorization header differs get 401.
The proxy prints "PORT" on stdout once it listens, writes one line per request
("METHOD PATH -> STATUS ACTION") to --log, and exits after --lifetime seconds
or when its parent process exits.
"""

import argparse
import http.client
import http.server
import os
import sys
import threading
import time
import urllib.parse


class Rule:
    def __init__(self, text):
        parts = text.split(":")
        if len(parts) not in (4, 5) or parts[2] not in ("fail", "lose", "throttle", "corrupt"):
            raise ValueError(f"invalid rule {text!r}: use METHOD:TEXT:ACTION:COUNT[:SKIP]")
        self.method, self.text, self.action = parts[0], parts[1], parts[2]
        self.count = int(parts[3])
        self.skip = int(parts[4]) if len(parts) == 5 else 0
        self.seen = 0

    def take(self, method, path):
        """Count a matching request and return the action when this rule acts on it."""
        if self.method not in ("*", method) or self.text not in path:
            return None
        self.seen += 1
        if self.skip < self.seen <= self.skip + self.count:
            return self.action
        return None


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    rules = []
    upstream = None
    expected_auth = None
    log_file = None
    lock = threading.Lock()

    def log_message(self, format, *args):
        pass

    def record(self, status, action):
        with self.lock:
            self.log_file.write(f"{self.command} {self.path} -> {status} {action or 'forward'}\n")
            self.log_file.flush()

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self, body):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                timeout=60)
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in ("connection", "keep-alive", "transfer-encoding")}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        kept = [(name, value) for name, value in response.getheaders()
                if name.lower() in ("content-type", "retry-after")]
        connection.close()
        return response.status, data, kept

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else None
        if self.expected_auth is not None and self.headers.get("Authorization") != self.expected_auth:
            self.record(401, "unauthorized")
            self.reply(401, b'{"error_code": "UNAUTHENTICATED", "message": "bad credentials"}')
            return
        with self.lock:
            action = next((a for a in (r.take(self.command, self.path) for r in self.rules) if a),
                          None)
        error = b'{"error_code": "INTERNAL_ERROR", "message": "injected fault"}'
        if action == "fail":
            self.record(500, action)
            self.reply(500, error)
            return
        if action == "throttle":
            self.record(429, action)
            self.reply(429, b'{"error_code": "REQUEST_LIMIT_EXCEEDED"}', [("Retry-After", "0")])
            return
        if action == "corrupt" and body:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        status, data, headers = self.forward(body)
        if action == "lose":
            self.record(500, action)
            self.reply(500, error)
            return
        self.record(status, action)
        self.reply(status, data, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


def watch(parent, deadline):
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--rule", action="append", default=[], help="METHOD:TEXT:ACTION:COUNT[:SKIP]")
    parser.add_argument("--expect-auth", help="required Authorization header value")
    parser.add_argument("--log", default=os.devnull, help="file for one line per request")
    parser.add_argument("--lifetime", type=float, default=300, help="seconds before exiting")
    args = parser.parse_args()

    Proxy.rules = [Rule(text) for text in args.rule]
    Proxy.upstream = urllib.parse.urlsplit(args.upstream)
    Proxy.expected_auth = args.expect_auth
    Proxy.log_file = open(args.log, "a", encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=watch, args=(os.getppid(), time.monotonic() + args.lifetime),
                     daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
