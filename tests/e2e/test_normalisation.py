"""Port, case, trailing dot and IPv6 literals: only real mismatches get a 421; authorities that are
no valid `host[:port]` get 400."""

import pytest

from harness.clients import H2Connection, h1_get

A = "a.example.com"


@pytest.mark.parametrize("authority", [
    "a.example.com",
    "A.EXAMPLE.COM",
    "a.Example.com:{port}",
    "a.example.com:443",
    "A.example.COM:65535",
])
def test_same_host_in_another_spelling_is_served(guarded, authority):
    port = guarded.listener_port()
    with H2Connection(port, sni=A) as conn:
        resp = conn.request(authority.format(port=port))
    assert resp.status == 200, authority
    assert resp.body == b"hello from a.example.com\n"


@pytest.mark.parametrize("authority", ["a.example.com.", "A.EXAMPLE.COM.:443"])
def test_trailing_dot_passes_the_filter(guarded, authority):
    # sni-guard treats `a.example.com.` as a.example.com and lets it through. Envoy's router
    # matches virtual-host domains literally (unless the connection manager sets
    # strip_trailing_host_dot), so the demo routes answer 404 NR: the filter's verdict is seen in
    # the access log details, route_not_found rather than misdirected_request.
    port = guarded.listener_port()
    path = f"/trailing-dot/{authority}"
    with H2Connection(port, sni=A) as conn:
        resp = conn.request(authority, path=path)
    assert resp.status == 404
    lines = guarded.wait_access_log(f"path={path} ")
    assert len(lines) == 1
    assert f"authority={authority} " in lines[0] and "details=route_not_found" in lines[0]


@pytest.mark.parametrize("authority", [
    "b.example.com",
    "B.EXAMPLE.COM.",
    "b.example.com:443",
    "example.com",
    "aa.example.com",
    "a.example.com.evil.test",
    "[::1]",
    "[::1]:443",
    "127.0.0.1",
])
def test_other_hosts_are_misdirected(guarded, authority):
    port = guarded.listener_port()
    with H2Connection(port, sni=A) as conn:
        resp = conn.request(authority)
    assert resp.status == 421, authority


@pytest.mark.parametrize("authority", [
    "a.example.com:", "a.example.com:abc", "a.example.com:443:443", "a.example.com:99999",
    "a.example.com,b.example.com", "a%2eexample.com", "a..example.com",
])
def test_malformed_authorities_never_match(guarded, authority):
    port = guarded.listener_port()
    series = 'sni_guard_misdirected{reason="invalid_authority",protocol="http2"}'
    before = guarded.counter(series)
    with H2Connection(port, sni=A) as conn:
        resp = conn.request(authority)
    # RFC 9112 §3.2: an invalid Host is a client error, 400; a retry elsewhere cannot help.
    assert resp.status == 400, authority
    assert guarded.wait_counter(series, before + 1) == before + 1


def test_http1_host_header_is_normalised_too(guarded):
    port = guarded.listener_port()
    assert h1_get(port, A, f"A.Example.Com:{port}").status == 200
    assert h1_get(port, A, "b.example.com.").status == 421


def test_no_sni_passes_through(guarded):
    # A client that connects by IP address sends no SNI; Envoy picks the default chain and
    # sni-guard, having nothing to compare, lets every host through.
    port = guarded.listener_port()
    before = guarded.counter("sni_guard_requests_without_sni")
    with H2Connection(port, sni=None) as conn:
        for authority in [f"127.0.0.1:{port}", "b.example.com", "[::1]:8443", "anything.test"]:
            resp = conn.request(authority)
            assert resp.status == 200, authority
            assert resp.body == b"hello without SNI\n"
    assert h1_get(port, None, "b.example.com").status == 200
    assert guarded.wait_counter("sni_guard_requests_without_sni", before + 5) == before + 5


def test_ipv6_literal_over_ipv6_loopback(guarded):
    # The listener binds 127.0.0.1; a second Envoy listener is not needed to see the literal
    # handling, but the client must really send a bracketed literal as :authority.
    port = guarded.listener_port()
    with H2Connection(port, sni=None) as conn:
        assert conn.request(f"[::1]:{port}").status == 200
    with H2Connection(port, sni=A) as conn:
        assert conn.request(f"[::1]:{port}").status == 421


def test_userinfo_is_refused_by_envoy_over_h2_and_by_the_filter_over_h1(guarded):
    # Over HTTP/2, Envoy's codec itself rejects an :authority with userinfo before any filter
    # runs (access log: DPE, http2.invalid.header.field) and drops the connection. Over HTTP/1.1
    # the Host header reaches sni-guard, which answers 400: not a host[:port].
    port = guarded.listener_port()
    dpe = ("flags=DPE", "http2.invalid.header.field")
    dpe_before = len(guarded.wait_access_log(*dpe, count=0))
    with pytest.raises(ConnectionError):
        with H2Connection(port, sni=A) as conn:
            conn.request("user@a.example.com")
    assert len(guarded.wait_access_log(*dpe, count=dpe_before + 1)) == dpe_before + 1
    resp = h1_get(port, A, "user@a.example.com")
    assert resp.status == 400
