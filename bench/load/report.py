"""Prints Locust's per-endpoint results beside seed 002's KPIs, and how
Panal's memory and CPU moved during the run (bench/load.sh)."""
import csv
import sys

P95_MS, RPS, ERRORS = 200, 1000, 0.001


def limited(failures_csv):
    """429 answers per endpoint: a limit doing its job (chat's 30 messages
    a minute per person, say), not an error."""
    out = {}
    try:
        for r in csv.DictReader(open(failures_csv)):
            if "code=429" in r["Error"]:
                out[r["Name"]] = out.get(r["Name"], 0) + int(r["Occurrences"])
    except FileNotFoundError:
        pass
    return out


def main(stats_csv, memory_txt, ticks_per_sec):
    rows = list(csv.DictReader(open(stats_csv)))
    throttled = limited(stats_csv.replace("_stats.csv", "_failures.csv"))
    print(f"\n{'endpoint':58} {'reqs':>7} {'req/s':>7} {'p50':>5} {'p95':>5} {'p99':>5} {'errors':>7}")
    by_service = {}
    for r in rows:
        name = f"{r['Type']} {r['Name']}" if r["Name"] != "Aggregated" else "all"
        reqs, fails = int(r["Request Count"]), int(r["Failure Count"])
        fails -= throttled.get(r["Name"], 0) if r["Name"] != "Aggregated" else sum(throttled.values())
        rps = float(r["Requests/s"])
        p50, p95, p99 = r["50%"], r["95%"], r["99%"]
        err = fails / reqs if reqs else 0.0
        flag = "" if (r["95%"] == "N/A" or int(p95) < P95_MS) and err < ERRORS else "  ← over a KPI"
        print(f"{name:58} {reqs:7} {rps:7.1f} {p50:>5} {p95:>5} {p99:>5} {err:7.2%}{flag}")
        if r["Name"] != "Aggregated":
            service = r["Name"].split("?")[0].split("/")[2] if r["Name"].startswith("/v1/") else "?"
            by_service[service] = by_service.get(service, 0.0) + rps
    for name, n in throttled.items():
        print(f"429 (a limit, not counted as an error): {n} × {name}")
    print("\nrequests/s per service:", ", ".join(f"{s} {v:.0f}" for s, v in sorted(by_service.items())))
    print(f"KPIs (seed 002): p95 < {P95_MS} ms, > {RPS} req/s per service, errors < {ERRORS:.1%}")

    samples = [tuple(map(int, line.split())) for line in open(memory_txt) if line.strip()]
    samples = [s for s in samples if s[1] > 0]
    if len(samples) >= 2:
        (t0, m0, c0), (t1, m1, c1) = samples[0], samples[-1]
        peak = max(s[1] for s in samples)
        # Growth after warm-up: from the sample a fifth of the way in.
        warm = samples[len(samples) // 5]
        cpu = (c1 - c0) / ticks_per_sec / max(t1 - t0, 1)
        print(
            f"Panal: RSS {m0 / 1024:.0f} MiB at start, {m1 / 1024:.0f} MiB at the end (peak {peak / 1024:.0f}); "
            f"after warm-up {warm[1] / 1024:.0f} → {m1 / 1024:.0f} MiB ({(m1 - warm[1]) / 1024:+.1f} MiB "
            f"over {t1 - warm[0]} s); CPU {cpu:.2f} cores on average"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
