#!/usr/bin/env python3
"""A DNS server for CI that answers every A question with 127.0.0.1.

Containers on the host's network resolve `postgres`, `nats`, `auth`, … to
this machine through it (`--dns 127.0.0.1`), by DNS as in a cluster — the
path a statically linked binary in a scratch image must get right, since it
has no NSS modules to load. AAAA and other questions get an empty answer.

    python3 deploy/ci/dns.py [port]      # 53 by default (needs root)
"""
import socket
import struct
import sys


def answer(query: bytes) -> bytes:
    qid, _flags, qdcount = struct.unpack(">HHH", query[:6])
    i = 12
    while query[i] != 0:
        i += 1 + query[i]
    qtype, _qclass = struct.unpack(">HH", query[i + 1 : i + 5])
    question = query[12 : i + 5]
    if qdcount == 1 and qtype == 1:
        record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
        return struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + record
    return struct.pack(">HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 53
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    while True:
        query, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(query), peer)
        except (IndexError, struct.error):
            pass  # not a question this server can read


if __name__ == "__main__":
    main()
