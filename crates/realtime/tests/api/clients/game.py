"""A live match end to end through the real Centrifugo SDK for Python
(centrifuge-python), against `panal up`, driven by
crates/panal/tests/cli/game.rs: two players and a spectator subscribe to
the match's channel and receive its frames at 30 Hz; inputs go over the
socket (`rpc` `game.input`, forwarded to game) and show in the next frames;
a spectator may watch but neither play nor publish; the match ends with a
final frame.

Arguments: the socket URL, the gateway URL, then (id, token) for Ada, Bob
(the players) and Eve (a spectator). Prints what failed and exits 1, or `ok`.
"""

import asyncio
import sys
import time

from centrifuge import Client, SubscriptionState

from harness import Recorder, check, request, run, wait_until

WS, GATEWAY = sys.argv[1:3]
ADA, ADA_TOKEN, BOB, BOB_TOKEN, EVE, EVE_TOKEN = sys.argv[3:9]


async def watch(token, channel):
    client = Client(WS, token=token)
    events = Recorder()
    sub = client.new_subscription(channel, events=events)
    await client.connect()
    await sub.subscribe()
    await wait_until(lambda: sub.state == SubscriptionState.SUBSCRIBED, f"subscribed to {channel}")
    return client, sub, events


async def frame(events, until=lambda f: True, seconds=10):
    """The next frame that satisfies `until`."""
    deadline = time.monotonic() + seconds
    while True:
        _, data = await asyncio.wait_for(events.publications.get(), timeout=max(0.1, deadline - time.monotonic()))
        if data.get("type") == "frame" and until(data):
            return data


async def a_match_is_played_over_the_socket():
    status, created = request(GATEWAY, "POST", "/v1/game/matches", ADA_TOKEN, {"mode": "duel", "options": {"points_to_win": 1}})
    check(status == 201, f"create: {status} {created}")
    match = created["id"]
    channel = f"game:{match}"
    ada, _, ada_sees = await watch(ADA_TOKEN, channel)
    bob, _, bob_sees = await watch(BOB_TOKEN, channel)
    eve, eve_sub, eve_sees = await watch(EVE_TOKEN, channel)
    status, joined = request(GATEWAY, "POST", f"/v1/game/matches/{match}/join", BOB_TOKEN, {})
    check(status == 200 and joined["status"] == "live", f"join: {status} {joined}")

    # Frames at 30 a second, to players and spectator alike.
    first = await frame(eve_sees)
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < 1.0:
        await frame(eve_sees)
        count += 1
    check(20 <= count <= 40, f"about 30 frames a second reach the spectator: {count}")
    # Ada's queue holds every frame since she subscribed: the newest ones.
    latest = await frame(ada_sees, lambda f: f["tick"] > first["tick"] + 30)
    check([p["user_id"] for p in latest["paddles"]] == [ADA, BOB], f"seats: {latest['paddles']}")

    # Ada presses over the socket: applied, and the next frames show it.
    reply = await ada.rpc("game.input", {"match_id": match, "seq": 1, "key": "up", "pressed": True, "ack": latest["tick"]})
    check(reply.data["applied"] is True, f"input applied: {reply.data}")
    seen = await frame(bob_sees, lambda f: f["paddles"][0]["last_seq"] == 1)
    check(seen["paddles"][0]["moving"] == -1, f"Ada's paddle moves up: {seen['paddles'][0]}")
    reply = await ada.rpc("game.input", {"match_id": match, "seq": 1, "key": "up", "pressed": True})
    check(reply.data["applied"] is False, "a duplicate is ignored")
    await ada.rpc("game.input", {"match_id": match, "seq": 2, "key": "up", "pressed": False})

    # The spectator can neither play nor publish on the channel.
    try:
        await eve.rpc("game.input", {"match_id": match, "seq": 1, "key": "down", "pressed": True})
        check(False, "a spectator's input is refused")
    except Exception as e:  # the SDK raises the reply's error
        check(getattr(e, "code", None) == 403, f"a spectator's input: {e!r}")
    try:
        await eve_sub.publish({"type": "frame", "tick": 0})
        check(False, "a client cannot publish on a game channel")
    except Exception as e:
        check(getattr(e, "code", None) == 103, f"publishing as a client: {e!r}")

    # Heartbeats over the socket keep both present; nobody plays, so the
    # serve goes in: the last frame says who won.
    async def keep_present():
        while True:
            for client in (ada, bob):
                await client.rpc("game.heartbeat", {"match_id": match})
            await asyncio.sleep(1)

    present = asyncio.create_task(keep_present())
    try:
        last = await frame(eve_sees, lambda f: f["phase"] == "finished", seconds=50)
    finally:
        present.cancel()
    winner = last["paddles"][last["winner"]]["user_id"]
    check(winner in (ADA, BOB), f"a winner: {last}")
    await wait_until(lambda: request(GATEWAY, "GET", f"/v1/game/matches/{match}", EVE_TOKEN)[1]["status"] == "finished", "stored as finished")
    status, over = request(GATEWAY, "GET", f"/v1/game/matches/{match}", EVE_TOKEN)
    check(over["result"]["winner"] == winner, f"the stored result agrees with the last frame: {over['result']}")

    # Stats hears of it (game's match_finished): both players rated, the
    # winner first on the leaderboard; game's matchmaking follows the new
    # rating (stats' rating_changed).
    loser = BOB if winner == ADA else ADA
    winner_token = ADA_TOKEN if winner == ADA else BOB_TOKEN
    await wait_until(lambda: request(GATEWAY, "GET", f"/v1/stats/players/{loser}", EVE_TOKEN)[0] == 200, "stats has the result")
    status, theirs = request(GATEWAY, "GET", f"/v1/stats/players/{winner}", EVE_TOKEN)
    line = theirs["modes"][0]
    check(status == 200 and line["wins"] == 1 and line["rating"] > 1500 and line["rank"] == 1, f"the winner's stats: {theirs}")
    status, board = request(GATEWAY, "GET", "/v1/stats/leaderboards/duel", EVE_TOKEN)
    check([i["user_id"] for i in board["items"]] == [winner, loser], f"the leaderboard: {board}")
    status, history = request(GATEWAY, "GET", f"/v1/stats/players/{loser}/matches", EVE_TOKEN)
    check(history["items"][0]["match_id"] == match and history["items"][0]["won"] is False, f"the loser's history: {history}")

    def queued_at_new_rating():
        status, queued = request(GATEWAY, "POST", "/v1/game/queue", winner_token, {"mode": "duel"})
        request(GATEWAY, "DELETE", "/v1/game/queue", winner_token)
        return status == 202 and abs(queued["rating"] - line["rating"]) < 1e-6

    await wait_until(queued_at_new_rating, "game queues the winner at stats' rating")
    for client in (ada, bob, eve):
        await client.disconnect()


async def an_invitation_card_in_chat_becomes_a_match():
    bob = Client(WS, token=BOB_TOKEN)
    bob_events = Recorder()
    bob_sub = bob.new_subscription(f"user:{BOB}", events=bob_events)
    await bob.connect()
    await bob_sub.subscribe()
    ada = Client(WS, token=ADA_TOKEN)
    ada_events = Recorder()
    ada_sub = ada.new_subscription(f"user:{ADA}", events=ada_events)
    await ada.connect()
    await ada_sub.subscribe()
    await wait_until(lambda: SubscriptionState.SUBSCRIBED == bob_sub.state == ada_sub.state, "subscribed to user channels")

    status, _ = request(GATEWAY, "POST", "/v1/game/invitations", ADA_TOKEN, {"to": ADA})
    check(status == 422, f"inviting oneself: {status}")
    status, invitation = request(GATEWAY, "POST", "/v1/game/invitations", ADA_TOKEN, {"to": BOB, "options": {"points_to_win": 3}})
    check(status == 201 and invitation["status"] == "pending", f"invite: {status} {invitation}")
    status, pending = request(GATEWAY, "GET", "/v1/game/invitations", BOB_TOKEN)
    check(any(i["id"] == invitation["id"] for i in pending), f"Bob's pending invitations: {pending}")

    # The card is in Bob's direct conversation with Ada, from Ada.
    status, conversations = request(GATEWAY, "GET", "/v1/chat/conversations", BOB_TOKEN)
    direct = [c for c in conversations if c["kind"] == "direct" and c["peer"]["id"] == ADA]
    check(len(direct) == 1, f"a direct conversation with Ada: {conversations}")
    status, page = request(GATEWAY, "GET", f"/v1/chat/conversations/{direct[0]['id']}/messages", BOB_TOKEN)
    card = page["items"][-1]["card"]
    check(card["type"] == "game_invitation" and card["reference"] == invitation["id"], f"the card: {card}")
    check(page["items"][-1]["author"]["id"] == ADA, "from Ada")
    accept = next(a for a in card["actions"] if a["name"] == "accept")

    # A stranger cannot take it; Bob accepts with the card's button; twice is refused.
    status, _ = request(GATEWAY, accept["method"], accept["href"], EVE_TOKEN, {})
    check(status == 403, f"a stranger accepts: {status}")
    status, _ = request(GATEWAY, accept["method"], accept["href"], ADA_TOKEN, {})
    check(status == 403, f"the inviter accepts: {status}")
    status, match = request(GATEWAY, accept["method"], accept["href"], BOB_TOKEN, {})
    check(status == 200 and match["status"] == "live" and match["origin"] == "invitation", f"accepted: {status} {match}")
    check([p["user_id"] for p in match["players"]] == [ADA, BOB], f"both seated: {match['players']}")
    status, _ = request(GATEWAY, accept["method"], accept["href"], BOB_TOKEN, {})
    check(status == 409, f"accepted twice: {status}")
    status, _ = request(GATEWAY, "POST", f"/v1/game/invitations/{invitation['id']}/decline", ADA_TOKEN, {})
    check(status == 409, f"withdrawn after it was accepted: {status}")

    # Both are sent to the match on their own channels.
    for who, events in (("Ada", ada_events), ("Bob", bob_events)):
        while True:
            _, data = await asyncio.wait_for(events.publications.get(), timeout=10)
            if data.get("type") == "match_ready":
                check(data["match_id"] == match["id"], f"{who} is sent to the match: {data}")
                break
    status, _ = request(GATEWAY, "POST", f"/v1/game/matches/{match['id']}/leave", ADA_TOKEN, {})
    check(status == 204, f"Ada leaves: {status}")
    for client in (ada, bob):
        await client.disconnect()


run(a_match_is_played_over_the_socket, an_invitation_card_in_chat_becomes_a_match)
