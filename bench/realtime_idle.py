"""Idle WebSocket connections held by realtime, and the memory each costs.

Opens N connections to realtime (each sends `connect` with an access token
and subscribes to its user's channel, then stays idle), and reads the
process's resident memory (VmRSS) before and after: the difference divided
by N is the memory per idle connection, everything included (tasks, queues,
socket buffers in user space, subscriptions). Connections are spread over
several 127.0.0.x source addresses, so more than one address's ephemeral
ports can be used.

    python3 bench/realtime_idle.py --ws ws://127.0.0.1:8003/v1/ws --pid PID \
        --token ACCESS_TOKEN --user USER_ID [--connections 2000]

`bench/realtime.sh` runs it against a fresh `panal up`.
"""

import argparse
import asyncio
import json
import time

import websockets


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_one(ws_url, token, user, source, held):
    ws = await websockets.connect(ws_url, local_addr=(source, 0), max_size=2**20, ping_interval=None)
    await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
    reply = json.loads(await ws.recv())
    if "connect" not in reply:
        raise RuntimeError(f"connect refused: {reply}")
    await ws.send(json.dumps({"id": 2, "subscribe": {"channel": f"user:{user}"}}))
    reply = json.loads(await ws.recv())
    if "error" in reply:
        raise RuntimeError(f"subscribe refused: {reply}")
    held.append(ws)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ws", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--sources", type=int, default=4, help="127.0.0.1 … 127.0.0.N")
    args = parser.parse_args()

    before = rss_kib(args.pid)
    held = []
    started = time.monotonic()
    batch = 200
    for first in range(0, args.connections, batch):
        count = min(batch, args.connections - first)
        await asyncio.gather(*[
            open_one(args.ws, args.token, args.user, f"127.0.0.{1 + (first + i) % args.sources}", held)
            for i in range(count)
        ])
    opened = time.monotonic() - started
    await asyncio.sleep(2)  # let the server settle
    after = rss_kib(args.pid)
    per = (after - before) / len(held)
    print(json.dumps({
        "connections": len(held),
        "open_seconds": round(opened, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round(per, 2),
    }))
    for ws in held:
        await ws.close()


asyncio.run(main())
