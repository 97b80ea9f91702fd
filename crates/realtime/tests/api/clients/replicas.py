"""Two realtime replicas sharing channels through Redis, with the Centrifugo
SDK for Python as clients, driven by crates/realtime/tests/api/main.rs.

Arguments: the two replicas' socket URLs, their publish URLs, a service
token that may publish, a user id and their access token.
"""

import sys

from centrifuge import Client, StreamPosition, SubscriptionState

import harness
from harness import Recorder, check, run, take, wait_until

WS1, WS2, PUBLISH1, PUBLISH2, SERVICE, ME, TOKEN, OTHER, OTHER_TOKEN, ROOM = sys.argv[1:11]
CHANNEL = f"user:{ME}"


def publish(url, data):
    return harness.publish(url, SERVICE, CHANNEL, data)


async def subscribed(ws, token=TOKEN, channel=CHANNEL, **options):
    client = Client(ws, token=token)
    events = Recorder()
    sub = client.new_subscription(channel, events=events, **options)
    await client.connect()
    await sub.subscribe()
    await wait_until(lambda: sub.state == SubscriptionState.SUBSCRIBED, f"subscribed to {channel} on {ws}")
    return client, events, sub


async def every_replica_delivers_everything_in_order_and_recovery_works_across_them():
    # One device on each replica; publications made through both.
    one, on_one, _ = await subscribed(WS1)
    two, on_two, _ = await subscribed(WS2, recoverable=True, positioned=True)
    offsets = [publish(PUBLISH1 if n % 2 else PUBLISH2, {"n": n})["offset"] for n in range(1, 101)]
    check(offsets == list(range(1, 101)), f"one numbering across replicas: {offsets[:5]}…")
    for name, events in (("replica 1", on_one), ("replica 2", on_two)):
        got = await take(events.publications, 100)
        check([d["n"] for _, d in got] == list(range(1, 101)), f"{name}: all 100 in order")
        check([o for o, _ in got] == list(range(1, 101)), f"{name}: offsets 1..100")

    # The device on replica 2 goes away, 50 are published, and it comes back
    # on replica 1 from where it was: it recovers exactly those (no sticky
    # sessions needed: the stream is Redis's, not a replica's).
    # The epoch from its subscription, the offset of the last it received.
    epoch = on_two.subscribed[-1].stream_position.epoch
    position = StreamPosition(offset=got[-1][0], epoch=epoch)
    check(position.offset == 100, f"replica 2's position: {position}")
    await two.disconnect()
    for n in range(101, 151):
        publish(PUBLISH2, {"n": n})

    async def saved(_channel):
        return StreamPosition(offset=position.offset, epoch=position.epoch)

    back = Client(WS1, token=TOKEN)
    events = Recorder()
    sub = back.new_subscription(CHANNEL, events=events, get_state=saved)
    await back.connect()
    await sub.subscribe()
    await wait_until(lambda: events.subscribed, "back, on replica 1")
    missed = await take(events.publications, 50)
    check([d["n"] for _, d in missed] == list(range(101, 151)), f"exactly the 50 missed: {missed[:2]}…")
    check(events.subscribed and events.subscribed[-1].recovered, f"recovered: {events.subscribed}")
    live = await take(on_one.publications, 50)
    check([d["n"] for _, d in live] == list(range(101, 151)), "replica 1's own device got them live")
    for client in (one, back):
        await client.disconnect()


async def presence_and_joins_span_the_replicas():
    # A room channel (user channels have no join and leave): granted by the
    # test's stand-in owner, which admits everyone.
    channel = ROOM
    a, on_a, sub_a = await subscribed(WS1, channel=channel, join_leave=True)
    b, on_b, sub_b = await subscribed(WS2, token=OTHER_TOKEN, channel=channel, join_leave=True)
    await wait_until(lambda: OTHER in on_a.joins, "A, on replica 1, hears B join on replica 2")
    for sub, where in ((sub_a, "replica 1"), (sub_b, "replica 2")):
        presence = await sub.presence()
        users = sorted(info.user for info in presence.clients.values())
        check(users == sorted([ME, OTHER]), f"presence from {where}: {users}")
        stats = await sub.presence_stats()
        check((stats.num_clients, stats.num_users) == (2, 2), f"presence stats from {where}: {stats}")
    check(ME not in on_a.joins, "A is not told of its own join")
    await sub_b.unsubscribe()
    await wait_until(lambda: OTHER in on_a.leaves, "A hears B leave")
    presence = await sub_a.presence()
    check([i.user for i in presence.clients.values()] == [ME], f"B left the presence: {presence}")
    for client in (a, b):
        await client.disconnect()


run(
    every_replica_delivers_everything_in_order_and_recovery_works_across_them,
    presence_and_joins_span_the_replicas,
)
