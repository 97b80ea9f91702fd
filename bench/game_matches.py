"""Drives bench/game.sh: keeps LEVEL matches live (created and joined over
HTTP), then measures for WINDOW seconds from game's /metrics and /proc.

Arguments: gateway URL, game URL (its /metrics), the panal pid, Ada's and
Bob's tokens, the window in seconds, then the levels. Prints one JSON line
per level.
"""

import json
import os
import re
import sys
import time
import urllib.request

GATEWAY, GAME, PID, ADA, BOB, WINDOW = sys.argv[1:7]
LEVELS = [int(n) for n in sys.argv[7:]]
WINDOW = float(WINDOW)
TICKS = os.sysconf("SC_CLK_TCK")


def call(method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(GATEWAY + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
        return json.loads(text) if text else None


def metrics():
    """Game's metrics: {name: value} and the histograms' buckets."""
    text = urllib.request.urlopen(GAME + "/metrics", timeout=10).read().decode()
    values, buckets = {}, {}
    for line in text.splitlines():
        # Game's own families (kit's histograms carry other labels).
        if not line.startswith("game_"):
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{", 1)[0]
        if base.endswith("_bucket"):
            le = re.search(r'le="([^"]+)"', name).group(1)
            buckets.setdefault(base[: -len("_bucket")], []).append((float(le), float(value)))
        else:
            values[base] = float(value)
    return values, buckets


def quantile(before, after, q):
    """The q-quantile of a histogram over a window (bucket upper bounds)."""
    deltas = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = deltas[-1][1]
    if total <= 0:
        return None
    for le, count in deltas:
        if count >= q * total:
            return le
    return float("inf")


def cpu_seconds():
    fields = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def top_up(level):
    live, _ = metrics()
    missing = level - int(live.get("game_live_matches", 0))
    for _ in range(max(0, missing)):
        created = call("POST", "/v1/game/matches", ADA, {"mode": "duel", "options": {"points_to_win": 21}})
        call("POST", f"/v1/game/matches/{created['id']}/join", BOB, {})
        last = created["id"]
    return missing


frame_bytes = None
for level in LEVELS:
    top_up(level)
    time.sleep(3)
    top_up(level)
    if frame_bytes is None:
        live = call("GET", "/v1/game/matches?status=live&limit=1", ADA)["items"][0]["id"]
        frame = call("GET", f"/v1/game/matches/{live}/state", ADA)
        # As realtime pushes it: the publication inside the protocol's push.
        data = dict(type="frame", **frame)
        push = {"push": {"channel": f"game:{live}", "pub": {"data": data}}}
        frame_bytes = len(json.dumps(push, separators=(",", ":")))
    before, before_buckets = metrics()
    cpu0, t0 = cpu_seconds(), time.monotonic()
    while time.monotonic() - t0 < WINDOW:
        time.sleep(1)
        top_up(level)
    after, after_buckets = metrics()
    cpu1, t1 = cpu_seconds(), time.monotonic()
    lateness = ("game_tick_lateness_seconds", before_buckets, after_buckets)
    jitter = ("game_tick_jitter_seconds", before_buckets, after_buckets)
    step = ("game_step_duration_seconds", before_buckets, after_buckets)
    out = {
        "matches": level,
        "live_at_end": int(after.get("game_live_matches", 0)),
        "tick_lateness_ms_p50": 1000 * quantile(lateness[1][lateness[0]], lateness[2][lateness[0]], 0.5),
        "tick_lateness_ms_p99": 1000 * quantile(lateness[1][lateness[0]], lateness[2][lateness[0]], 0.99),
        "tick_jitter_ms_p50": 1000 * quantile(jitter[1][jitter[0]], jitter[2][jitter[0]], 0.5),
        "tick_jitter_ms_p99": 1000 * quantile(jitter[1][jitter[0]], jitter[2][jitter[0]], 0.99),
        "step_ms_p50": 1000 * quantile(step[1][step[0]], step[2][step[0]], 0.5),
        "step_ms_p99": 1000 * quantile(step[1][step[0]], step[2][step[0]], 0.99),
        "frames_per_s": (after["game_frames_total"] - before["game_frames_total"]) / (t1 - t0),
        "skipped_broadcasts": after["game_skipped_broadcasts_total"] - before["game_skipped_broadcasts_total"],
        "cpu_percent_of_one_core": 100 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mib": rss_mib(),
        "bytes_per_s_per_player": frame_bytes * 30,
    }
    print(json.dumps(out), flush=True)
