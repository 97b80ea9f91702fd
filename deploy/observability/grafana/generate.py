#!/usr/bin/env python3
"""Panal's Grafana dashboards, as code.

    python3 deploy/observability/grafana/generate.py          # writes the JSON files
    python3 deploy/observability/grafana/generate.py --check  # CI: files current, PromQL valid

The JSON files beside this script are what Grafana imports (Dashboards → New →
Import, or provisioning); they are generated here so that a panel is a line
of Python, not fifty of JSON. `--check` fails when a file differs from what
this script makes, or when promtool refuses a query.
"""

import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROBES = 'route!~"/healthz|/readyz|/metrics"'


def panel(title, exprs, unit="short", kind="timeseries", description="", width=12, legend="{{service}}"):
    """A panel of one or more queries (`exprs`: expr or (expr, legend))."""
    targets = []
    for i, e in enumerate(exprs):
        expr, leg = (e if isinstance(e, tuple) else (e, legend))
        targets.append({"refId": chr(65 + i), "expr": expr, "legendFormat": leg,
                        "datasource": {"type": "prometheus", "uid": "${datasource}"}})
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
        "gridPos": {"w": width, "h": 8},
    }


def dashboard(uid, title, description, panels, service_variable=False):
    x = y = 0
    laid = []
    for i, p in enumerate(panels):
        w = p["gridPos"]["w"]
        if x + w > 24:
            x, y = 0, y + 8
        p = dict(p, id=i + 1, gridPos={"x": x, "y": y, "w": w, "h": 8})
        laid.append(p)
        x += w
    variables = [{
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0,
    }]
    if service_variable:
        variables.append({
            "name": "service", "label": "Service", "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": "label_values(http_requests_total, service)", "refId": "service"},
            "definition": "label_values(http_requests_total, service)",
            "refresh": 2, "current": {}, "hide": 0, "includeAll": False, "multi": False,
        })
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["panal"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "panels": laid,
    }


def overview():
    return dashboard("panal-overview", "Panal — overview",
                     "Every service at a glance: traffic, errors, latency, readiness, the bus.", [
        panel("Requests per second", ["service:http_requests:rate5m"], "reqps"),
        panel("Errors (5xx share)", ["service:http_errors:ratio_rate5m"], "percentunit",
              description="Objective: at most 0.1 % over 30 days."),
        panel("Latency p95", ["service:http_request_duration_seconds:p95_5m"], "s",
              description="Objective: 95 % of requests within 250 ms."),
        panel("Slow requests (over 250 ms)", ["service:http_slow:ratio_rate5m"], "percentunit"),
        panel("Ready", ["min by (service) (service_ready)"], "bool_yes_no", kind="stat", width=8),
        panel("Outbox backlog", ["sum by (service) (bus_outbox_backlog)"], "short", width=8),
        panel("Dead letters", ["sum by (service) (bus_dead_letters)"], "short", kind="stat", width=8),
    ])


def service():
    sel = f'service="$service", {PROBES}'
    return dashboard("panal-service", "Panal — service",
                     "One service's rate, errors and duration (RED), by route.", [
        panel("Requests per second, by route",
              [(f'sum by (route) (rate(http_requests_total{{{sel}}}[$__rate_interval]))', "{{route}}")], "reqps"),
        panel("Errors per second, by route and status",
              [(f'sum by (route, status) (rate(http_requests_total{{{sel}, status=~"5.."}}[$__rate_interval]))',
                "{{route}} {{status}}")], "reqps"),
        panel("Client errors per second (4xx), by status",
              [(f'sum by (status) (rate(http_requests_total{{{sel}, status=~"4.."}}[$__rate_interval]))',
                "{{status}}")], "reqps"),
        panel("Duration p50 / p95 / p99",
              [(f'histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))',
                f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], "s"),
        panel("Duration p95, by route",
              [(f'histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))',
                "{{route}}")], "s"),
        panel("In flight", [('sum(http_requests_in_flight{service="$service"})', "in flight")], "short", width=8),
        panel("Database pool", [
            ('sum(db_pool_connections_open{service="$service"})', "open"),
            ('sum(db_pool_connections_idle{service="$service"})', "idle"),
            ('sum(db_pool_connections_max{service="$service"})', "max"),
        ], "short", width=8),
        panel("Process memory", [('max by (instance) (process_resident_memory_bytes{service="$service"})',
                                  "{{instance}}")], "bytes", width=8),
    ], service_variable=True)


def bus():
    return dashboard("panal-bus", "Panal — event bus",
                     "Outboxes, relays and consumers: is every event getting where it goes?", [
        panel("Published per second", ["sum by (service) (rate(bus_published_total[$__rate_interval]))"], "ops"),
        panel("Consumed per second, by outcome",
              [("sum by (service, outcome) (rate(bus_consumed_total[$__rate_interval]))",
                "{{service}} {{outcome}}")], "ops",
              description="applied, duplicate (redelivered, changed nothing), ignored, deferred (retried later), dead_lettered."),
        panel("Outbox backlog", ["sum by (service) (bus_outbox_backlog)"], "short"),
        panel("Oldest event waiting in the outbox", ["max by (service) (bus_outbox_oldest_age_seconds)"], "s",
              description="Alert OutboxStuck at 2 minutes."),
        panel("Dead letters", ["sum by (service) (bus_dead_letters)"], "short",
              description="Replay with `panal events replay` once the cause is fixed."),
        panel("Relay failures per second", ["sum by (service) (rate(bus_relay_failures_total[$__rate_interval]))"], "ops"),
        panel("Handler retries per second", ["sum by (service) (rate(bus_handler_retries_total[$__rate_interval]))"], "ops",
              description="Transient handler failures tried again; dead letters follow when they keep failing."),
        panel("Consumer lag", ["max by (service) (bus_consumer_lag_seconds)"], "s",
              description="Age of the last event each consumer applied, from its commit."),
    ])


def gateway():
    return dashboard("panal-gateway", "Panal — gateway",
                     "The edge: traffic by upstream, upstream outcomes, breakers, retries, rate limits.", [
        panel("Requests per second, by upstream",
              [('sum by (route) (rate(http_requests_total{service="gateway"}[$__rate_interval]))', "{{route}}")],
              "reqps"),
        panel("Upstream calls, by outcome",
              [("sum by (upstream, outcome) (rate(gateway_upstream_requests_total[$__rate_interval]))",
                "{{upstream}} {{outcome}}")], "ops"),
        panel("Duration p95, by upstream",
              [('histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket{service="gateway"}[$__rate_interval])))',
                "{{route}}")], "s"),
        panel("Retries per second", [("sum by (upstream) (rate(gateway_retries_total[$__rate_interval]))",
                                      "{{upstream}}")], "ops", width=8),
        panel("Circuit breakers (0 closed, 1 half-open, 2 open)",
              [("max by (upstream) (gateway_breaker_state)", "{{upstream}}")], "short", width=8),
        panel("Instances in rotation", [("min by (upstream) (gateway_available_instances)", "{{upstream}}")],
              "short", width=8),
        panel("Rate-limited per second", [("sum(rate(gateway_rate_limited_total[$__rate_interval]))", "limited")],
              "ops", width=8),
        panel("Refused revoked sessions per second",
              [("sum(rate(gateway_revoked_token_refusals_total[$__rate_interval]))", "refused")], "ops", width=8),
        panel("Rate limits served from memory (Redis failed)",
              [("sum(rate(gateway_rate_limit_redis_errors_total[$__rate_interval]))", "fallbacks")], "ops", width=8),
    ])


DASHBOARDS = {"overview.json": overview, "service.json": service, "bus.json": bus, "gateway.json": gateway}


def render(make):
    return json.dumps(make(), indent=2, ensure_ascii=False) + "\n"


def check():
    problems = []
    exprs = []
    for name, make in DASHBOARDS.items():
        wanted = render(make)
        path = HERE / name
        if not path.exists() or path.read_text() != wanted:
            problems.append(f"{name} is not what generate.py makes: run it and commit the result")
        for p in make()["panels"]:
            exprs += [t["expr"] for t in p["targets"]]
    # PromQL checked by promtool, as recording rules (with Grafana's
    # variables given values).
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: dashboards\n    rules:\n")
        for i, e in enumerate(exprs):
            e = e.replace("$__rate_interval", "5m").replace("$service", "users")
            f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(e)}\n")
    out = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if out.returncode != 0:
        problems.append("promtool refuses a dashboard query:\n" + out.stdout + out.stderr)
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(DASHBOARDS)} dashboards current, {len(exprs)} queries valid")


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
    else:
        for name, make in DASHBOARDS.items():
            (HERE / name).write_text(render(make))
        print(f"wrote {', '.join(DASHBOARDS)}")
