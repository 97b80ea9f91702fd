"""What the client scripts share: failures collected rather than raised (a
script reports every one), a recorder of a subscription's events, waiting,
and running scenarios. The scripts print what failed and exit 1, or print
`ok`; the Rust tests that run them assert on that.
"""

import asyncio
import json
import sys
import urllib.error
import urllib.request

from centrifuge import (
    JoinContext,
    LeaveContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


class Recorder(SubscriptionEventHandler):
    """Everything a subscription hears: publications (offset, data) in a
    queue, and the subscribed contexts, errors, unsubscriptions, joins and
    leaves in lists."""

    def __init__(self):
        self.publications = asyncio.Queue()
        self.subscribed = []
        self.errors = []
        self.unsubscribed = []
        self.joins = []
        self.leaves = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.publications.put((ctx.pub.offset, ctx.pub.data))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self.errors.append(ctx.code)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx.code)

    async def on_join(self, ctx: JoinContext) -> None:
        self.joins.append(ctx.info.user)

    async def on_leave(self, ctx: LeaveContext) -> None:
        self.leaves.append(ctx.info.user)


async def take(queue, n):
    """The next n items of a queue, each within 10 s."""
    return [await asyncio.wait_for(queue.get(), timeout=10) for _ in range(n)]


async def wait_until(predicate, what, seconds=10):
    for _ in range(seconds * 20):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    failures.append(f"timed out: {what}")
    return False


def publish(url, token, channel, data):
    """Publishes through realtime's HTTP API with a service token; the answer."""
    body = json.dumps({"channel": channel, "data": data}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


def request(base, method, path, token, body=None):
    """An HTTP call with a bearer token: (status, JSON answer or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path,
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def finish():
    """Reports: the failures and exit 1, or `ok`."""
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("ok")


def run(*scenarios):
    """Runs each scenario (60 s at most; one that crashes is a failure,
    said), then reports."""

    async def main():
        for scenario in scenarios:
            try:
                await asyncio.wait_for(scenario(), timeout=60)
            except Exception as e:
                failures.append(f"{scenario.__name__}: {type(e).__name__}: {e!r}")

    asyncio.run(main())
    finish()
