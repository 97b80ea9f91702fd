"""Bad input on realtime's socket, with a raw WebSocket client (`websockets`,
which centrifuge-python brings), driven by crates/realtime/tests/api/main.rs.

Arguments: the socket URL, a valid access token, an expired one. Each case
checks the close code or error the protocol documents (docs/realtime.md).
"""

import asyncio
import json
import sys

import websockets

from harness import failures, finish

WS, TOKEN, EXPIRED = sys.argv[1:4]


async def closed_with(send, code, what):
    async with websockets.connect(WS) as ws:
        for frame in send:
            await ws.send(frame)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=10)
        except websockets.ConnectionClosed as e:
            got = e.rcvd.code if e.rcvd else None
            if got != code:
                failures.append(f"{what}: closed with {got}, expected {code}")
        except asyncio.TimeoutError:
            failures.append(f"{what}: not closed")


async def replies(frames, what):
    async with websockets.connect(WS) as ws:
        for frame in frames:
            await ws.send(frame)
        out = []
        for _ in range(len(frames)):
            out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=10)))
        return out


async def main():
    connect = json.dumps({"id": 1, "connect": {"token": TOKEN}})
    # No connect within the deadline (the test sets it to 1 s): stale.
    await closed_with([], 3502, "silent socket")
    # Anything before connect, garbage, binary frames, oversized frames.
    await closed_with([json.dumps({"id": 1, "subscribe": {"channel": "chat:1"}})], 3501, "command before connect")
    await closed_with([connect, "this is not json"], 3501, "garbage after connect")
    await closed_with([connect, b"\x00\x01binary"], 3501, "binary frame")
    await closed_with([connect, json.dumps({"id": 2, "rpc": {"method": "x", "data": "a" * 70000}})], 3511, "frame over 64 KiB")
    # Bad tokens.
    await closed_with([json.dumps({"id": 1, "connect": {"token": "not-a-token"}})], 3500, "invalid token")
    out = await replies([json.dumps({"id": 1, "connect": {"token": EXPIRED}})], "expired token")
    if out[0].get("error", {}).get("code") != 109:
        failures.append(f"expired token: {out}")
    # Errors that keep the connection: each a coded reply.
    cases = [
        ({"id": 2, "subscribe": {"channel": "user:not-a-uuid"}}, 107),
        ({"id": 3, "subscribe": {"channel": "nope:1"}}, 102),
        ({"id": 4, "publish": {"channel": "chat:1", "data": {"html": "<script>alert(1)</script>"}}}, 103),
        ({"id": 5, "history": {"channel": "chat:1", "limit": 10}}, 103),
        ({"id": 6, "rpc": {"method": "chat.send", "data": {}}}, 104),
        ({"id": 7, "ping": {}, "presence": {"channel": "x"}}, 107),
        ({"id": 8, "connect": {"token": TOKEN}}, 107),
    ]
    out = await replies([connect] + [json.dumps(c) for c, _ in cases], "coded errors")
    if "connect" not in out[0]:
        failures.append(f"connect: {out[0]}")
    for (case, code), reply in zip(cases, out[1:]):
        if reply.get("id") != case["id"] or reply.get("error", {}).get("code") != code:
            failures.append(f"{case}: expected error {code}, got {reply}")


asyncio.run(main())
finish()
