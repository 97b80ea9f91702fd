"""Chat end to end through the real Centrifugo SDK for Python
(centrifuge-python), against `panal up`, driven by
crates/panal/tests/cli/realtime.rs (it lives here, beside the harness it
shares with realtime's own client scripts).

Arguments: the socket URL, the gateway URL, the room id, then (id, token)
for Ada, Bob, Cy (members of the room) and Eve (a stranger). Prints what
failed and exits 1, or prints `ok`.
"""

import asyncio
import sys

from centrifuge import Client, SubscriptionState

from harness import Recorder, check, failures, request, run, wait_until

WS, GATEWAY, ROOM = sys.argv[1:4]
ADA, ADA_TOKEN, BOB, BOB_TOKEN, CY, CY_TOKEN, EVE, EVE_TOKEN = sys.argv[4:12]
CHANNEL = f"chat:{ROOM}"


def http(method, path, token, body=None):
    return request(GATEWAY, method, path, token, body)


async def messages(queue, n):
    """The next n `message` publications' bodies, skipping other kinds."""
    got = []
    while len(got) < n:
        _, data = await asyncio.wait_for(queue.get(), timeout=10)
        if data.get("type") == "message":
            got.append(data["message"]["body"])
    return got


async def join(token):
    client = Client(WS, token=token)
    events = Recorder()
    sub = client.new_subscription(CHANNEL, events=events)
    await client.connect()
    await sub.subscribe()
    await wait_until(lambda: sub.state == SubscriptionState.SUBSCRIBED, "subscribed to the room")
    return client, events


async def sent_over_the_socket_arrive_in_order_and_missed_ones_are_recovered():
    ada, _ = await join(ADA_TOKEN)
    bob, bob_sees = await join(BOB_TOKEN)
    cy, cy_sees = await join(CY_TOKEN)

    # chat.send is an rpc the socket forwards to chat: stored, then pushed.
    for n in range(20):
        reply = await ada.rpc("chat.send", {"conversation_id": ROOM, "body": f"live {n}"})
        check(reply.data["seq"] == n + 1, f"rpc send answers the message: {reply.data}")
    wanted = [f"live {n}" for n in range(20)]
    check(await messages(bob_sees.publications, 20) == wanted, "Bob gets the 20 in order")
    check(await messages(cy_sees.publications, 20) == wanted, "Cy gets the 20 in order")

    # Bob goes away; 50 are posted over HTTP; back, the SDK recovers exactly those.
    await bob.disconnect()
    for n in range(50):
        status, _ = http("POST", f"/v1/chat/conversations/{ROOM}/messages", CY_TOKEN, {"body": f"missed {n}"})
        check(status == 201, f"post over HTTP: {status}")
    await bob.connect()
    await wait_until(lambda: len(bob_sees.subscribed) >= 2, "Bob subscribed again")
    check(await messages(bob_sees.publications, 50) == [f"missed {n}" for n in range(50)], "exactly the 50 missed")
    again = bob_sees.subscribed[-1]
    check(again.was_recovering and again.recovered, f"recovered: {again}")

    # A bad message is an rpc error with the HTTP status as its code.
    try:
        await ada.rpc("chat.send", {"conversation_id": ROOM, "body": "x" * 3000})
        failures.append("an oversized message was accepted")
    except Exception as e:
        check(getattr(e, "code", None) == 422, f"oversized: error 422, got {e!r}")
    try:
        await ada.rpc("chat.launch", {})
        failures.append("an unknown rpc was accepted")
    except Exception as e:
        check(getattr(e, "code", None) == 404, f"unknown method: 404, got {e!r}")
    for client in (ada, bob, cy):
        await client.disconnect()


async def a_blocked_author_never_reaches_the_blocker():
    ada, _ = await join(ADA_TOKEN)
    bob, bob_sees = await join(BOB_TOKEN)
    cy, cy_sees = await join(CY_TOKEN)
    status, _ = http("PUT", f"/v1/users/me/blocks/{ADA}", BOB_TOKEN)
    check(status == 204, f"Bob blocks Ada: {status}")
    # Chat learns of the block from users' event: the direct message refusal shows it.
    for _ in range(200):
        status, _ = http("POST", f"/v1/chat/direct/{BOB}", ADA_TOKEN)
        if status == 403:
            break
        await asyncio.sleep(0.05)
    check(status == 403, f"a direct conversation with a blocker is refused: {status}")
    await ada.rpc("chat.typing", {"conversation_id": ROOM})
    await ada.rpc("chat.send", {"conversation_id": ROOM, "body": "from Ada"})
    await cy.rpc("chat.send", {"conversation_id": ROOM, "body": "from Cy"})
    check(await messages(cy_sees.publications, 2) == ["from Ada", "from Cy"], "Cy gets both")
    got = []
    while True:
        _, data = await asyncio.wait_for(bob_sees.publications.get(), timeout=10)
        got.append(data)
        if data.get("type") == "message" and data["message"]["body"] == "from Cy":
            break
    check(all(d.get("user_id") != ADA and d.get("message", {}).get("body") != "from Ada" for d in got),
          f"nothing of Ada's reaches Bob: {got}")
    for client in (ada, bob, cy):
        await client.disconnect()


async def typing_is_live_only():
    ada, ada_sees = await join(ADA_TOKEN)
    cy, _ = await join(CY_TOKEN)
    await cy.rpc("chat.typing", {"conversation_id": ROOM})
    while True:
        offset, data = await asyncio.wait_for(ada_sees.publications.get(), timeout=10)
        if data.get("type") == "typing":
            check(data["user_id"] == CY and not offset, f"typing: Cy, not numbered: {offset} {data}")
            break
    for client in (ada, cy):
        await client.disconnect()


async def a_stranger_cannot_listen_in():
    client = Client(WS, token=EVE_TOKEN)
    events = Recorder()
    sub = client.new_subscription(CHANNEL, events=events)
    await client.connect()
    await sub.subscribe()
    await wait_until(lambda: events.errors or events.unsubscribed, "the stranger's subscription answered")
    check(103 in events.errors + events.unsubscribed, f"permission denied: {events.errors} {events.unsubscribed}")
    try:
        await client.rpc("chat.send", {"conversation_id": ROOM, "body": "let me in"})
        failures.append("a stranger posted")
    except Exception as e:
        check(getattr(e, "code", None) == 403, f"a stranger's post: 403, got {e!r}")
    await client.disconnect()


run(
    sent_over_the_socket_arrive_in_order_and_missed_ones_are_recovered,
    typing_is_live_only,
    a_stranger_cannot_listen_in,
    a_blocked_author_never_reaches_the_blocker,
)
