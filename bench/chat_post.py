"""Posts numbered chat messages as fast as CONCURRENCY clients can, for
`panal-dev ws-fanout --pointer /message/body` to time: each body is
`{"t": <unix ns when sent>, "k": <number>}`. Prints the posting rate.

    python3 bench/chat_post.py URL TOKEN CONVERSATION MESSAGES CONCURRENCY
"""

import json
import sys
import threading
import time
import urllib.request

url, token, conversation, messages, concurrency = sys.argv[1:6]
messages, concurrency = int(messages), int(concurrency)
endpoint = f"{url}/v1/chat/conversations/{conversation}/messages"
counter = iter(range(messages))
lock = threading.Lock()
failures = []


def worker():
    while True:
        with lock:
            k = next(counter, None)
        if k is None:
            return
        body = json.dumps({"body": json.dumps({"t": time.time_ns(), "k": k})}).encode()
        request = urllib.request.Request(endpoint, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                r.read()
        except Exception as e:  # counted, reported
            failures.append(repr(e))


started = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - started
print(json.dumps({"posted": messages - len(failures), "failed": len(failures), "seconds": round(elapsed, 2),
                  "messages_per_second": round((messages - len(failures)) / elapsed, 1)}))
