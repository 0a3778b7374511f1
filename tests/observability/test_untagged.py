"""Envoy without sni-guard's `stats_tags` (Istio without the bootstrap patch) exports
`sni_guard_misdirected_listener_mismatch_http2` and `sni_guard_response_flag_NR`; the relabelling
of istio/observability/metric-relabel-untagged.yaml, applied by a real Prometheus scraping it,
gives back the labelled series the rules and the dashboard use."""

from __future__ import annotations

import pytest
import yaml

from harness.clients import H2Connection
from harness.envoy import REPO, Envoy, load_demo

from .prometheus import Prometheus

A, B = "a.example.com", "b.example.com"
RELABEL = REPO / "istio" / "observability" / "metric-relabel-untagged.yaml"
POD = "gateway-untagged"
SEL = f'namespace="istio-system",pod="{POD}"'


@pytest.fixture(scope="module")
def untagged():
    config = load_demo()
    del config["stats_config"]
    with Envoy(config) as envoy:
        # Really untagged: the labels are part of the names.
        raw = envoy.prometheus()
        assert "sni_guard_misdirected_listener_mismatch_http2" in raw
        assert "sni_guard_response_flag_NR" in raw
        assert not any(k.startswith("sni_guard_misdirected{") for k in raw)
        targets = [(f"127.0.0.1:{envoy.admin_port}", {"namespace": "istio-system", "pod": POD})]
        relabel = yaml.safe_load(RELABEL.read_text())
        with Prometheus(targets, metric_relabel_configs=relabel) as prom:
            port = envoy.listener_port()
            with H2Connection(port, sni=A) as conn:
                for _ in range(3):
                    assert conn.request(f"{B}:{port}").status == 421
                assert conn.request(f"{A}:{port}", path="/demo/uf").status == 503
            assert envoy.wait_counter("sni_guard_misdirected_listener_mismatch_http2", 3) == 3
            prom.wait(lambda: prom.query(f'sni_guard_response_flag{{{SEL},flag="UF"}} > 0'),
                      "a scrape after the traffic")
            yield prom


def test_relabelled_421_counter(untagged):
    promql = (f'sni_guard_misdirected{{{SEL},reason="listener_mismatch",protocol="http2"}}')
    assert untagged.wait_value(promql, 3) == 3


def test_relabelled_flag_counter(untagged):
    assert untagged.wait_value(f'sni_guard_response_flag{{{SEL},flag="UF"}}', 1) == 1


def test_every_series_is_relabelled(untagged):
    """No series keeps a label in its name, and every reason, protocol and flag comes out."""
    names = set(untagged.api("/api/v1/label/__name__/values",
                             **{"match[]": '{__name__=~"sni_guard.*"}'}))
    assert names == {"sni_guard_requests_checked", "sni_guard_requests_without_sni",
                     "sni_guard_misdirected", "sni_guard_would_misdirect",
                     "sni_guard_response_flag"}
    series = untagged.query(f'count by (reason, protocol) (sni_guard_misdirected{{{SEL}}})')
    assert {(s["metric"]["reason"], s["metric"]["protocol"]) for s in series} == {
        (r, p) for r in ("listener_mismatch", "missing_sni", "invalid_authority")
        for p in ("http1", "http2", "http3", "unknown")}
    flags = untagged.query(f'count by (flag) (sni_guard_response_flag{{{SEL}}})')
    assert len(flags) == 31 and {"NR", "UF", "UO", "UH", "other"} <= {
        s["metric"]["flag"] for s in flags}
