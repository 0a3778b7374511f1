"""HTTP/3: the same incident over one QUIC connection, with a real HTTP/3 client (aioquic)."""

import pytest

from harness.envoy import Envoy, load_demo
from harness.h3 import h3_requests, quic_listener

A, B = "a.example.com", "b.example.com"


@pytest.fixture(scope="module")
def quic_envoy():
    config = load_demo()
    listeners = config["static_resources"]["listeners"]
    listeners.append(quic_listener(listeners[0]))
    with Envoy(config) as envoy:
        yield envoy


def test_coalesced_http3_request_is_421(quic_envoy):
    port = quic_envoy.listener_port(1)
    first, second, third = h3_requests(port, A, [A, B, f"{A}:{port}"])
    assert first.status == 200 and first.body == b"hello from a.example.com\n"
    assert second.status == 421 and second.body.startswith(b"Misdirected Request")
    assert third.status == 200
    series = 'sni_guard_misdirected{reason="listener_mismatch",protocol="http3"}'
    assert quic_envoy.wait_counter(series, 1) == 1
    lines = quic_envoy.wait_access_log("HTTP/3", f"authority={B} ", "status=421")
    assert len(lines) == 1 and "details=misdirected_request" in lines[0] and f"sni={A}" in lines[0]
