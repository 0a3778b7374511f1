"""Response-flag counting turned off (`"response_flags": "off"`), and left to Envoy's own stats
access logger (`envoy/flags-stats-access-log.yaml`), in real Envoy; both forms of the demo."""

import json

import pytest

from harness.clients import H2Connection
from harness.envoy import (FORMS, Envoy, envoy_version, load_demo, native_flag_counting,
                           set_plugin_config)

A = "a.example.com"


def send_flagged_requests(envoy: Envoy) -> None:
    with H2Connection(envoy.listener_port(), sni=A) as conn:
        assert conn.request(A, path="/demo/uf").status == 503  # UF
        assert conn.request(A, path="/demo/uo").status == 503  # UO
        assert conn.request("a.example.com.", path="/nr").status == 404  # NR: no route
        for _ in range(3):
            assert conn.request(A).status == 200  # no flag
        assert conn.request("b.example.com").status == 421  # sni-guard's reply


def wasm_flag_series(envoy: Envoy) -> dict:
    return {k: v for k, v in envoy.prometheus().items() if k.startswith("sni_guard_response_flag")}


@pytest.mark.parametrize("form", list(FORMS))
def test_flags_off_defines_no_flag_counter_and_still_checks(form):
    config = FORMS[form](set_plugin_config(load_demo(), json.dumps({"response_flags": "off"})))
    with Envoy(config) as envoy:
        send_flagged_requests(envoy)
        assert envoy.wait_counter('sni_guard_misdirected{reason="listener_mismatch",'
                                  'protocol="http2"}', 1) == 1
        assert envoy.wait_counter("sni_guard_requests_checked", 7) == 7
        assert wasm_flag_series(envoy) == {}
        # Envoy did set the flags: the access log shows them.
        log = "\n".join(envoy.wait_access_log("flags=UF"))
        assert "path=/demo/uf" in log


@pytest.mark.skipif(envoy_version() < (1, 40), reason="envoy.access_loggers.stats: Envoy 1.40+")
@pytest.mark.parametrize("form", list(FORMS))
def test_stats_access_logger_counts_the_flags(form):
    with Envoy(native_flag_counting(FORMS[form](load_demo()))) as envoy:
        send_flagged_requests(envoy)
        for code in ("UF", "UO", "NR"):
            series = f'envoy_sni_guard_response_flag{{flag="{code}"}}'
            assert envoy.wait_counter(series, 1) == 1, series
        native = {k: v for k, v in envoy.prometheus().items()
                  if k.startswith("envoy_sni_guard_response_flag")}
        # Only flags that occurred, one series each: no `flag="-"` for the successful requests.
        assert native == {f'envoy_sni_guard_response_flag{{flag="{c}"}}': 1.0
                          for c in ("UF", "UO", "NR")}
        assert wasm_flag_series(envoy) == {}
        assert envoy.counter('sni_guard_misdirected{reason="listener_mismatch",'
                             'protocol="http2"}') == 1
