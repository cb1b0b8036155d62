#!/usr/bin/env python3
"""TLS front on 127.0.0.1 for a plain HTTP test server, for tests.

    tls_proxy.py --upstream http://127.0.0.1:PORT --cert SERVER.pem --key SERVER.key

Accepts TLS connections with the given certificate and relays the decrypted
bytes to the upstream, unchanged in both directions, so the Host header and
S3 signatures pass through as sent. With --make-certs FOLDER it first writes
a test CA (ca.pem) and a server certificate for IP 127.0.0.1 signed by it
(server.pem, server.key) into FOLDER with the openssl command, and serves
those. Prints the port once it listens, and exits after --lifetime seconds or
when its parent process exits. A handshake the client rejects is logged to
--log as "handshake failed: REASON".
"""

import argparse
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse


def make_certs(folder):
    """Write ca.pem, server.pem and server.key, valid for two days."""
    os.makedirs(folder, exist_ok=True)

    def path(name):
        return os.path.join(folder, name)

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=apiary test CA", "-keyout", path("ca.key"), "-out", path("ca.pem"),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", path("server.key"), "-out", path("server.csr"))
    with open(path("server.ext"), "w", encoding="ascii") as extensions:
        extensions.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                         "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"),
            "-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", path("server.ext"), "-out", path("server.pem"))
    return path("server.pem"), path("server.key")


def relay(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve_client(client, context, upstream, log):
    try:
        secure = context.wrap_socket(client, server_side=True)
    except (ssl.SSLError, OSError) as error:
        log.write(f"handshake failed: {error}\n")
        log.flush()
        client.close()
        return
    try:
        plain = socket.create_connection((upstream.hostname, upstream.port), timeout=60)
    except OSError:
        secure.close()
        return
    back = threading.Thread(target=relay, args=(plain, secure), daemon=True)
    back.start()
    relay(secure, plain)
    back.join()
    secure.close()
    plain.close()


def watch(parent, deadline):
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT to relay to")
    parser.add_argument("--cert", help="server certificate chain (PEM)")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--make-certs", help="folder for a new test CA and server certificate")
    parser.add_argument("--log", default=os.devnull, help="file for failed handshakes")
    parser.add_argument("--lifetime", type=float, default=600, help="seconds before exiting")
    args = parser.parse_args()
    upstream = urllib.parse.urlsplit(args.upstream)
    if upstream.hostname != "127.0.0.1":
        parser.error("the upstream must be on 127.0.0.1")
    if args.make_certs:
        args.cert, args.key = make_certs(args.make_certs)
    if not args.cert or not args.key:
        parser.error("give --cert and --key, or --make-certs")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    listener = socket.create_server(("127.0.0.1", 0))
    log = open(args.log, "a", encoding="utf-8")
    threading.Thread(target=watch, args=(os.getppid(), time.monotonic() + args.lifetime),
                     daemon=True).start()
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve_client, args=(client, context, upstream, log),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
