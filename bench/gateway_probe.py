#!/usr/bin/env python3
"""Helpers for bench/gateway.sh, standard library only.

idle HOST PORT N PATH HEADER PID...
                          open N keep-alive connections (one GET PATH each,
                          with HEADER, "name: value", if not empty), print
                          the RSS growth of the PIDs (MiB per 10,000)
revoke BASE TOKEN         log out with TOKEN, then time until the gateway
                          refuses it (ms)
"""
import asyncio
import json
import sys
import time
import urllib.request


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def idle(host, port, n, path, header, pids):
    before = rss_kib(pids)
    conns = []
    extra = f"{header}\r\n" if header else ""
    request = f"GET {path} HTTP/1.1\r\nhost: {host}\r\n{extra}\r\n".encode()
    sem = asyncio.Semaphore(500)

    async def one():
        async with sem:
            r, w = await asyncio.open_connection(host, port)
            w.write(request)
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"GET {path} was answered {head.splitlines()[0]!r}")
            conns.append((r, w))

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(1.0)
    after = rss_kib(pids)
    print(f"{len(conns)} idle keep-alive connections: RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, "
          f"+{(after - before) / 1024 * 10000 / len(conns):.1f} MiB per 10,000")
    for _, w in conns:
        w.close()


def revoke(base, token):
    def get():
        req = urllib.request.Request(f"{base}/v1/auth/me", headers={"authorization": f"Bearer {token}"})
        try:
            return urllib.request.urlopen(req).status
        except urllib.error.HTTPError as e:
            return e.code
    assert get() == 200
    urllib.request.urlopen(urllib.request.Request(f"{base}/v1/auth/logout", method="POST",
                                                  headers={"authorization": f"Bearer {token}"}))
    start = time.perf_counter()
    # /v1/auth/me is refused by auth itself at once; ask the gateway through a
    # route it alone judges: the bench upstream.
    while True:
        req = urllib.request.Request(f"{base}/v1/bench/x", headers={"authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                break
        if time.perf_counter() - start > 10:
            raise SystemExit("the gateway did not refuse the revoked token within 10 s")
    print(f"revoked session refused by the gateway {1000 * (time.perf_counter() - start):.1f} ms after the logout answered")


if __name__ == "__main__":
    if sys.argv[1] == "idle":
        asyncio.run(idle(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6],
                         [int(p) for p in sys.argv[7:]]))
    elif sys.argv[1] == "revoke":
        revoke(sys.argv[2], sys.argv[3])
