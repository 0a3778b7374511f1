"""The observability loop for real: Prometheus scrapes two Envoys running sni-guard (one
enforcing, one in dry run) on their admin `/stats/prometheus`, real HTTP/2 and HTTP/1.1 traffic
goes through them over TLS, and PromQL through Prometheus's HTTP API sees exact counter values,
every panel of the Grafana dashboard has data, and the alerting rules evaluate cleanly and put
exactly the expected alerts in pending state."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

from harness.clients import H2Connection, h1_get
from harness.envoy import REPO, Envoy, load_demo, set_plugin_config

from .prometheus import Prometheus

A, B = "a.example.com", "b.example.com"
OBS = REPO / "istio" / "observability"
RULES = OBS / "sni-guard.rules.yaml"
DASHBOARD = OBS / "grafana-dashboard.json"
NAMESPACE = "istio-system"
ENFORCE, DRY = "gateway-enforce", "gateway-dryrun"

# The traffic below, and what it must add up to.
MATCHING = 5          # a.example.com on a connection for a.example.com: 200
MISMATCHED_H2 = 20    # b.example.com on that connection: 421 (enforce) / would-be 421 + 404 NR
MISMATCHED_H1 = 1     # the same over HTTP/1.1 (enforce only)


def sel(pod: str, extra: str = "") -> str:
    return "{" + f'namespace="{NAMESPACE}",pod="{pod}"' + (f",{extra}" if extra else "") + "}"


def send_enforce_traffic(envoy: Envoy) -> int:
    """Requests through the enforcing Envoy; returns how many sni-guard checked."""
    port = envoy.listener_port()
    with H2Connection(port, sni=A) as conn:
        for _ in range(MATCHING):
            assert conn.request(f"{A}:{port}").status == 200
        for _ in range(MISMATCHED_H2):
            assert conn.request(f"{B}:{port}").status == 421
        assert conn.request(f"{A}:{port}", path="/demo/uf").status == 503  # UF
        assert conn.request("a.example.com.", path="/nr").status == 404    # NR, passes the filter
    assert h1_get(port, A, f"{B}:{port}").status == 421
    with H2Connection(port, sni=None) as conn:                              # no SNI: passed
        assert conn.request(f"127.0.0.1:{port}").status == 200
    return MATCHING + MISMATCHED_H2 + 2 + MISMATCHED_H1 + 1


def send_dry_run_traffic(envoy: Envoy) -> int:
    port = envoy.listener_port()
    with H2Connection(port, sni=A) as conn:
        for _ in range(MATCHING):
            assert conn.request(f"{A}:{port}").status == 200
        for _ in range(MISMATCHED_H2):
            # Not answered 421 in dry run: gateway A's chain has no route for b.example.com.
            assert conn.request(f"{B}:{port}").status == 404
    return MATCHING + MISMATCHED_H2


@pytest.fixture(scope="module")
def stack():
    started = time.time()
    dry_config = set_plugin_config(load_demo(), '{"mode": "dry_run"}')
    with Envoy(load_demo()) as enforce, Envoy(dry_config) as dry:
        targets = [
            (f"127.0.0.1:{enforce.admin_port}", {"namespace": NAMESPACE, "pod": ENFORCE}),
            (f"127.0.0.1:{dry.admin_port}", {"namespace": NAMESPACE, "pod": DRY}),
        ]
        with Prometheus(targets, rule_files=[RULES]) as prom:
            # A first sample of every counter before any traffic, so rates see the increase.
            for pod in (ENFORCE, DRY):
                prom.wait(lambda pod=pod: prom.query(f"sni_guard_requests_checked{sel(pod)}"),
                          f"a first scrape of {pod}", timeout=30)
            checked = {ENFORCE: send_enforce_traffic(enforce), DRY: send_dry_run_traffic(dry)}
            # Envoy side first (requests_checked is handed to Envoy on a 1 s tick).
            assert enforce.wait_counter("sni_guard_requests_checked", checked[ENFORCE]) \
                == checked[ENFORCE]
            assert dry.wait_counter("sni_guard_requests_checked", checked[DRY]) == checked[DRY]
            yield prom, checked, started


def test_targets_are_up_with_the_gateway_labels(stack):
    prom, *_ = stack
    up = {r["metric"]["pod"]: r["value"][1] for r in prom.query('up{job="envoy-stats"}')}
    assert up == {ENFORCE: "1", DRY: "1"}


@pytest.mark.parametrize("series, pod, want", [
    ('sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}', ENFORCE,
     MISMATCHED_H2),
    ('sni_guard_misdirected{reason="listener_mismatch",protocol="http1"}', ENFORCE,
     MISMATCHED_H1),
    ("sni_guard_requests_without_sni", ENFORCE, 1),
    ('sni_guard_response_flag{flag="UF"}', ENFORCE, 1),
    ('sni_guard_response_flag{flag="NR"}', ENFORCE, 1),
    ('sni_guard_would_misdirect{reason="listener_mismatch",protocol="http2"}', DRY,
     MISMATCHED_H2),
    # In dry run the mismatched requests reach the router and end as 404 NR.
    ('sni_guard_response_flag{flag="NR"}', DRY, MISMATCHED_H2),
])
def test_exact_counter_values_through_prometheus(stack, series, pod, want):
    prom, *_ = stack
    name, _, labels = series.partition("{")
    promql = f"sum({name}{sel(pod, labels.rstrip('}'))})"
    assert prom.wait_value(promql, want) == want


def test_requests_checked_and_zeros_through_prometheus(stack):
    prom, checked, _ = stack
    for pod in (ENFORCE, DRY):
        promql = f"sni_guard_requests_checked{sel(pod)}"
        assert prom.wait_value(promql, checked[pod]) == checked[pod]
    # Nothing else was counted: no 421 in dry run, no would-be 421 when enforcing, no other
    # reason or protocol, no flag but UF and NR.
    assert prom.value(f"sum(sni_guard_misdirected{sel(DRY)})") == 0
    assert prom.value(f"sum(sni_guard_would_misdirect{sel(ENFORCE)})") == 0
    assert prom.value(f"sum(sni_guard_misdirected{sel(ENFORCE)})") == MISMATCHED_H2 + MISMATCHED_H1
    assert prom.value(f"sum(sni_guard_would_misdirect{sel(DRY)})") == MISMATCHED_H2
    other_flags = {ENFORCE: 'flag!~"UF|NR"', DRY: 'flag!="NR"'}
    for pod, matcher in other_flags.items():
        assert prom.value(f"sum(sni_guard_response_flag{sel(pod, matcher)})") == 0, pod


# -- the Grafana dashboard -------------------------------------------------------------------

def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query target of every panel, rows included."""
    dash = json.loads(DASHBOARD.read_text())

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    return [(p["title"], t["expr"]) for p in panels(dash["panels"]) for t in p.get("targets", [])]


def lookback(started: float) -> str:
    """A range that reaches back to before the fixture's first scrape, however long the suite
    has run: rates and increases over it always span the traffic and the sample before it (a
    fixed `1m` would lose the traffic on a slow machine)."""
    return f"{int(time.time() - started) + 30}s"


def concrete(expr: str, window: str = "1m") -> str:
    """Grafana's built-in variables as concrete ranges (`window` for `$__rate_interval` and
    `$__range`), dashboard variables as match-all."""
    expr = expr.replace("$__rate_interval", window).replace("$__range", window) \
        .replace("$__interval", "1s")
    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", ".*", expr)
    assert "$" not in expr, expr
    return expr


def test_dashboard_has_queries():
    exprs = dashboard_exprs()
    assert len(exprs) >= 8


@pytest.mark.parametrize("title, expr", dashboard_exprs(),
                         ids=[f"{i}-{t}" for i, (t, _) in enumerate(dashboard_exprs())])
def test_every_dashboard_panel_has_data(stack, title, expr):
    prom, _, started = stack
    promql = concrete(expr, lookback(started))
    # Every query returns series, and at least one of them is a real non-zero figure: the
    # traffic above touches every panel (421s, would-be 421s, flags, requests without SNI).
    result = prom.wait(
        lambda: [r for r in prom.query(promql)
                 if not math.isnan(float(r["value"][1])) and float(r["value"][1]) > 0],
        f"data for panel {title!r}: {promql}")
    assert result


def test_dashboard_variables_find_the_gateways(stack):
    prom, *_ = stack
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for name, want in (("namespace", [NAMESPACE]), ("pod", sorted([ENFORCE, DRY]))):
        query = variables[name]["query"]["query"]
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert m and m.group(2) == name, query
        match = concrete(m.group(1))
        assert sorted(prom.api(f"/api/v1/label/{name}/values", **{"match[]": match})) == want


# -- the alerting rules ----------------------------------------------------------------------

def test_rules_are_loaded_and_evaluate_without_error(stack):
    prom, *_ = stack

    def evaluated():
        rules = [r for g in prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20")
                                      and r["health"] != "unknown" for r in rules) else None

    rules = prom.wait(evaluated, "a first evaluation of every rule")
    assert len(rules) == 7
    assert {r["name"]: (r["health"], r.get("lastError", "")) for r in rules} == \
        {r["name"]: ("ok", "") for r in rules}


def test_the_traffic_puts_exactly_the_expected_alerts_in_pending(stack):
    """21 421s in a few seconds are over 0.05/s on the 5-minute rate and 2% of the requests;
    20 would-be 421s over 1/min on the 10-minute rate; in dry run the same 20 requests end as
    NR. One UF is below the 0.05/s minimum; the rising alert has no 6h history."""
    prom, *_ = stack
    want = {
        ("SniGuardMisdirectedShareHigh", ENFORCE, None),
        ("SniGuardDryRunWouldMisdirect", DRY, "listener_mismatch"),
        ("SniGuardNoRouteShareHigh", DRY, None),
    }

    def active():
        alerts = prom.api("/api/v1/alerts")["alerts"]
        got = {(a["labels"]["alertname"], a["labels"]["pod"], a["labels"].get("reason"))
               for a in alerts}
        return alerts if got >= want else None

    alerts = prom.wait(active, f"alerts {sorted(want, key=str)}", timeout=20)
    got = {(a["labels"]["alertname"], a["labels"]["pod"], a["labels"].get("reason")): a
           for a in alerts}
    assert set(got) == want
    # `for:` durations are minutes: pending, not firing, and the values are the shares.
    assert {a["state"] for a in alerts} == {"pending"}
    share = float(got[("SniGuardMisdirectedShareHigh", ENFORCE, None)]["value"])
    assert 0.5 < share < 1
    assert got[("SniGuardNoRouteShareHigh", DRY, None)]["annotations"]["summary"].endswith(
        f"{NAMESPACE}/{DRY} find no route (NR)")
