"""The other policy knobs in real Envoy: `protocols`, `missing_sni` and `mode` in strict scope."""

from harness.clients import H2Connection, h1_get

from harness.envoy import envoy_with

A, B = "a.example.com", "b.example.com"


def test_protocols_limits_which_requests_are_checked():
    with envoy_with('{"protocols": ["HTTP/2"]}') as envoy:
        port = envoy.listener_port()
        with H2Connection(port, sni=A) as conn:
            assert conn.request(B).status == 421
        # HTTP/1.1 is not checked: Envoy's routing answers (no route for b on a's chain).
        resp = h1_get(port, A, B, path="/unchecked")
        assert resp.status == 404
        assert envoy.wait_access_log("path=/unchecked ", "flags=NR")
        assert envoy.counter(
            'sni_guard_misdirected{reason="listener_mismatch",protocol="http1"}') == 0
        assert envoy.wait_counter("sni_guard_requests_checked", 1) == 1


def test_missing_sni_reject_in_strict_scope():
    with envoy_with('{"missing_sni": "reject"}') as envoy:
        port = envoy.listener_port()
        with H2Connection(port, sni=None) as conn:
            assert conn.request(A).status == 421
        with H2Connection(port, sni=A) as conn:
            assert conn.request(A).status == 200
        series = 'sni_guard_misdirected{reason="missing_sni",protocol="http2"}'
        assert envoy.wait_counter(series, 1) == 1
        assert envoy.wait_counter("sni_guard_requests_without_sni", 1) == 1


def test_dry_run_counts_logs_and_answers_nothing():
    with envoy_with('{"mode": "dry_run"}') as envoy:
        port = envoy.listener_port()
        with H2Connection(port, sni=A) as conn:
            assert conn.request(A).status == 200
            # Routing answers as if sni-guard were absent: 404 NR for b on a's chain.
            assert conn.request(B).status == 404
        series = 'sni_guard_would_misdirect{reason="listener_mismatch",protocol="http2"}'
        assert envoy.wait_counter(series, 1) == 1
        assert envoy.counter(
            'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}') == 0
        # The harness runs Envoy with --component-log-level wasm:debug.
        assert envoy.wait_log("sni-guard dry run: would answer 421 (listener_mismatch)")
