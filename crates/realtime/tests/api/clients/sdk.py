"""Realtime through the real Centrifugo SDK for Python (centrifuge-python,
PyPI), driven by crates/realtime/tests/api/main.rs.

Arguments: the socket URL, the publish URL, a service token that may
publish, then pairs of (user id, access token) for two users. Each scenario
prints what failed; the script exits 1 on any failure, else prints `ok`.
"""

import asyncio
import sys

from centrifuge import Client, ClientEventHandler, SubscriptionState

import harness
from harness import Recorder, check, run, take, wait_until

WS, PUBLISH, SERVICE, ME, MY_TOKEN, OTHER, OTHER_TOKEN = sys.argv[1:8]


def publish(channel, data):
    return harness.publish(PUBLISH, SERVICE, channel, data)


async def own_channel_live_then_recovered_after_a_reconnect():
    client = Client(WS, token=MY_TOKEN, events=ClientEventHandler())
    events = Recorder()
    sub = client.new_subscription(f"user:{ME}", events=events, recoverable=True, positioned=True)
    await client.connect()
    await sub.subscribe()
    await wait_until(lambda: sub.state == SubscriptionState.SUBSCRIBED, "subscribed to my channel")

    for n in range(1, 4):
        publish(f"user:{ME}", {"n": n})
    live = await take(events.publications, 3)
    check([d["n"] for _, d in live] == [1, 2, 3], f"live publications in order: {live}")
    check([o for o, _ in live] == [1, 2, 3], f"offsets 1..3: {live}")

    # Away while 50 are published; back, the SDK recovers exactly those.
    await client.disconnect()
    for n in range(4, 54):
        publish(f"user:{ME}", {"n": n})
    await client.connect()
    await wait_until(lambda: len(events.subscribed) >= 2, "subscribed again")
    missed = await take(events.publications, 50)
    check([d["n"] for _, d in missed] == list(range(4, 54)), f"exactly the 50 missed, in order: {missed[:3]}…")
    again = events.subscribed[-1]
    check(again.was_recovering and again.recovered, f"recovered: {again}")
    check(events.publications.empty(), "nothing twice")

    publish(f"user:{ME}", {"n": 54})
    after = await take(events.publications, 1)
    check(after[0][1]["n"] == 54, f"live again after the recovery: {after}")
    await client.disconnect()


async def strangers_and_unknown_channels_are_refused():
    client = Client(WS, token=MY_TOKEN)
    await client.connect()
    for channel, code in [(f"user:{OTHER}", 103), ("news:1", 102), ("chat:lobby", 103)]:
        events = Recorder()
        sub = client.new_subscription(channel, events=events)
        await sub.subscribe()
        await wait_until(lambda: events.errors or events.unsubscribed, f"{channel} answered")
        check(code in events.errors + events.unsubscribed, f"{channel}: expected {code}, got {events.errors} {events.unsubscribed}")
        check(sub.state != SubscriptionState.SUBSCRIBED, f"{channel}: not subscribed")
    await client.disconnect()


async def two_users_each_get_their_own():
    mine, theirs = Client(WS, token=MY_TOKEN), Client(WS, token=OTHER_TOKEN)
    me, them = Recorder(), Recorder()
    a = mine.new_subscription(f"user:{ME}", events=me)
    b = theirs.new_subscription(f"user:{OTHER}", events=them)
    await mine.connect()
    await theirs.connect()
    await a.subscribe()
    await b.subscribe()
    await wait_until(lambda: a.state == b.state == SubscriptionState.SUBSCRIBED, "both subscribed")
    publish(f"user:{OTHER}", {"for": "other"})
    got = await take(them.publications, 1)
    check(got[0][1] == {"for": "other"}, f"the other user's publication: {got}")
    await asyncio.sleep(0.3)
    check(me.publications.empty(), "nothing of the other user's reaches me")
    await mine.disconnect()
    await theirs.disconnect()


run(
    own_channel_live_then_recovered_after_a_reconnect,
    strangers_and_unknown_channels_are_refused,
    two_users_each_get_their_own,
)
