"""Publishes numbered messages for `panal-dev ws-fanout` to time: each
carries `{"t": <unix ns when sent>, "k": <number>}`.

    python3 bench/realtime_publish.py panal  URL TOKEN CHANNEL MESSAGES INTERVAL
    python3 bench/realtime_publish.py soketi URL APP_ID KEY SECRET CHANNEL MESSAGES INTERVAL

Panal: `POST URL` (realtime's publish API) with a service client's token.
Soketi: the Pusher HTTP API (`POST URL/apps/APP_ID/events`, signed with the
app's secret).
"""

import hashlib
import hmac
import json
import sys
import time
import urllib.request


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        r.read()


def main():
    target = sys.argv[1]
    if target == "panal":
        url, token, channel, messages, interval = sys.argv[2:7]
        send = lambda data: post(url, json.dumps({"channel": channel, "data": data}).encode(),
                                 {"Authorization": f"Bearer {token}"})
    else:
        base, app, key, secret, channel, messages, interval = sys.argv[2:9]

        def send(data):
            body = json.dumps({"name": "bench", "channels": [channel], "data": json.dumps(data)}).encode()
            path = f"/apps/{app}/events"
            query = (f"auth_key={key}&auth_timestamp={int(time.time())}&auth_version=1.0"
                     f"&body_md5={hashlib.md5(body).hexdigest()}")
            signature = hmac.new(secret.encode(), f"POST\n{path}\n{query}".encode(), hashlib.sha256).hexdigest()
            post(f"{base}{path}?{query}&auth_signature={signature}", body, {})
    for k in range(int(messages)):
        send({"t": time.time_ns(), "k": k})
        time.sleep(float(interval))


main()
