"""An owner-granted channel through the Centrifugo SDK for Python, driven by
crates/realtime/tests/api/main.rs (which runs a stand-in owner that grants
the first two tokens and refuses the third).

Arguments: the socket URL, the channel, then the access tokens and user ids
of a member A, a member B, and a stranger C.
"""

import asyncio
import sys

from centrifuge import Client, SubscriptionState

from harness import Recorder, failures, finish, wait_until

WS, CHANNEL, A, A_ID, B, B_ID, C = sys.argv[1:8]

async def main():
    a, b, c = Client(WS, token=A), Client(WS, token=B), Client(WS, token=C)
    wa, wb, wc = Recorder(), Recorder(), Recorder()
    sa = a.new_subscription(CHANNEL, events=wa, join_leave=True)
    sb = b.new_subscription(CHANNEL, events=wb, join_leave=True)
    sc = c.new_subscription(CHANNEL, events=wc)
    for client in (a, b, c):
        await client.connect()

    await sa.subscribe()
    await wait_until(lambda: sa.state == SubscriptionState.SUBSCRIBED, "A subscribed (granted by the owner)")
    await sb.subscribe()
    await wait_until(lambda: sb.state == SubscriptionState.SUBSCRIBED, "B subscribed")
    await wait_until(lambda: B_ID in wa.joins, "A sees B join")

    presence = await sa.presence()
    users = sorted(info.user for info in presence.clients.values())
    if users != sorted([A_ID, B_ID]):
        failures.append(f"presence: {users}")
    stats = await sa.presence_stats()
    if (stats.num_clients, stats.num_users) != (2, 2):
        failures.append(f"presence stats: {stats}")

    await sc.subscribe()
    await wait_until(lambda: (wc.errors + wc.unsubscribed), "the stranger refused")
    if 103 not in (wc.errors + wc.unsubscribed) or sc.state == SubscriptionState.SUBSCRIBED:
        failures.append(f"the stranger: {(wc.errors + wc.unsubscribed)} {sc.state}")

    await sb.unsubscribe()
    await wait_until(lambda: B_ID in wa.leaves, "A sees B leave")
    if A_ID in wa.joins:
        failures.append("A was told of its own join")

    for client in (a, b, c):
        await client.disconnect()


asyncio.run(asyncio.wait_for(main(), timeout=60))
finish()
