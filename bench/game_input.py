"""Input-to-broadcast latency, for bench/game.sh: Ada and Bob play one more
match (over the socket, with the Centrifugo SDK for Python) while the other
matches run; Ada presses and releases a key SAMPLES times over `rpc`
(`game.input`), and each time the script measures from sending the input
to the first frame on `game:<match>` whose `last_seq` shows it.

Arguments: the socket URL, the gateway URL, Ada's and Bob's tokens,
samples. Prints one JSON line.
"""

import asyncio
import json
import sys
import time
import urllib.request

from centrifuge import Client, PublicationContext, SubscriptionEventHandler

WS, GATEWAY, ADA, BOB, SAMPLES = sys.argv[1:6]
SAMPLES = int(SAMPLES)


def call(method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(GATEWAY + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class Frames(SubscriptionEventHandler):
    def __init__(self):
        self.latest = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.latest.put((time.monotonic(), ctx.pub.data))


async def main():
    match = call("POST", "/v1/game/matches", ADA, {"mode": "duel", "options": {"points_to_win": 21}})["id"]
    call("POST", f"/v1/game/matches/{match}/join", BOB, {})
    client = Client(WS, token=ADA)
    frames = Frames()
    sub = client.new_subscription(f"game:{match}", events=frames)
    await client.connect()
    await sub.subscribe()
    latencies = []
    seq = 0
    for n in range(SAMPLES):
        # The newest tick seen, for `ack`.
        await asyncio.sleep(0.05)
        ack = None
        while not frames.latest.empty():
            ack = frames.latest.get_nowait()[1]["tick"]
        seq += 1
        sent = time.monotonic()
        await client.rpc("game.input", {"match_id": match, "seq": seq, "key": "up" if n % 2 else "down", "pressed": True, "ack": ack})
        while True:
            at, data = await asyncio.wait_for(frames.latest.get(), timeout=5)
            if data.get("type") == "frame" and data["paddles"][0]["last_seq"] >= seq:
                latencies.append((at - sent) * 1000)
                break
        seq += 1
        await client.rpc("game.input", {"match_id": match, "seq": seq, "key": "up" if n % 2 else "down", "pressed": False})
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)
    print(json.dumps({"samples": len(latencies), "input_to_frame_ms_p50": pick(0.5), "input_to_frame_ms_p99": pick(0.99),
                      "max_ms": round(latencies[-1], 1)}))
    await client.disconnect()


asyncio.run(main())
