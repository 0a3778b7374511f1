"""The incident and its fix: two hosts, one wildcard certificate, one coalesced HTTP/2 connection."""

from harness.clients import H2Connection, h1_get

A, B = "a.example.com", "b.example.com"
MISDIRECTED_BODY = b"Misdirected Request"


def downstream_connections(envoy, prefix: str) -> float:
    return envoy.counter(
        f'envoy_http_downstream_cx_total{{envoy_http_conn_manager_prefix="{prefix}"}}')


def test_coalesced_request_is_answered_421_on_the_same_connection(guarded):
    port = guarded.listener_port()
    before = downstream_connections(guarded, "gateway_a")
    with H2Connection(port, sni=A) as conn:
        first = conn.request(f"{A}:{port}")
        second = conn.request(f"{B}:{port}")
        third = conn.request(f"{A}:{port}")
    assert first.status == 200 and first.body == b"hello from a.example.com\n"
    assert second.status == 421
    assert MISDIRECTED_BODY in second.body
    assert second.header("content-type") == "text/plain"
    # The connection survives the 421: the right host still works on it.
    assert third.status == 200
    # All three requests really shared one connection of gateway A's filter chain.
    assert downstream_connections(guarded, "gateway_a") == before + 1
    # The client's retry on a new connection, opened for b.example.com, succeeds.
    with H2Connection(port, sni=B) as conn:
        retry = conn.request(f"{B}:{port}")
    assert retry.status == 200 and retry.body == b"hello from b.example.com\n"


def test_without_the_filter_the_same_sequence_is_404_no_route(unguarded):
    port = unguarded.listener_port()
    with H2Connection(port, sni=A) as conn:
        first = conn.request(f"{A}:{port}", path="/before")
        second = conn.request(f"{B}:{port}", path="/before")
    assert first.status == 200
    assert second.status == 404
    nr = unguarded.wait_access_log(f"authority={B}:{port} path=/before ")
    assert len(nr) == 1
    assert "flags=NR" in nr[0] and "details=route_not_found" in nr[0] and f"sni={A}" in nr[0]


def test_access_log_shows_the_details_string(guarded):
    port = guarded.listener_port()
    with H2Connection(port, sni=A) as conn:
        assert conn.request(f"{B}:{port}", path="/logged").status == 421
    mine = guarded.wait_access_log("path=/logged ")
    assert len(mine) == 1
    assert "status=421" in mine[0]
    assert "details=misdirected_request" in mine[0]
    assert f"sni={A}" in mine[0] and "chain=gateway-a" in mine[0]


def test_http1_mismatch_is_421(guarded):
    port = guarded.listener_port()
    assert h1_get(port, A, f"{A}:{port}").status == 200
    resp = h1_get(port, A, f"{B}:{port}")
    assert resp.status == 421
    assert MISDIRECTED_BODY in resp.body


def test_counter_of_421s_by_reason_and_protocol(guarded):
    port = guarded.listener_port()
    h2_series = 'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}'
    h1_series = 'sni_guard_misdirected{reason="listener_mismatch",protocol="http1"}'
    h2_before, h1_before = guarded.counter(h2_series), guarded.counter(h1_series)
    with H2Connection(port, sni=A) as conn:
        for _ in range(3):
            assert conn.request(f"{B}:{port}").status == 421
    assert h1_get(port, A, B).status == 421
    assert guarded.wait_counter(h2_series, h2_before + 3) == h2_before + 3
    assert guarded.wait_counter(h1_series, h1_before + 1) == h1_before + 1
