"""Where the host comes from when a request names it twice or oddly: duplicate `Host`, `Host`
next to `:authority`, absolute-form targets, CONNECT, WebSocket upgrades (HTTP/1.1 and HTTP/2
extended CONNECT), HTTP/1.0. The rule checked each time: sni-guard judges the value Envoy's
router routes on (the access log's `authority=` is that value)."""

from __future__ import annotations

import pytest

from harness.clients import H2Connection, h1_exchange

from harness.hostile import A, B, assert_counted, log_line, misdirected_counts, unique_path

WS = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def h1(envoy, path: str, head: bytes) -> tuple[int, str]:
    """Sends `head` (request line and headers, without the final CRLF) on a TLS connection
    with SNI a.example.com; returns the status and the access log line of `path`."""
    resp = h1_exchange(envoy.listener_port(), A, head + b"\r\n")
    return resp.status, log_line(envoy, path)


# (id, request head with {p} for the unique path, status, authority Envoy routed on, details,
#  reason counted)
H1_CASES = [
    ("two-hosts", b"GET {p} HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n"
     b"Connection: close\r\n", 400, "a.example.com,b.example.com", "invalid_authority",
     "invalid_authority"),
    # Even twice the right name: Envoy joins the two values with a comma, never a valid host.
    ("two-same-hosts", b"GET {p} HTTP/1.1\r\nHost: a.example.com\r\nHost: a.example.com\r\n"
     b"Connection: close\r\n", 400, "a.example.com,a.example.com", "invalid_authority",
     "invalid_authority"),
    # Absolute form: the target's host replaces Host (RFC 9112 §3.2.2), for the router and for
    # sni-guard alike.
    ("absolute-form-other", b"GET https://b.example.com{p} HTTP/1.1\r\nHost: a.example.com\r\n"
     b"Connection: close\r\n", 421, "b.example.com", "misdirected_request", "listener_mismatch"),
    ("absolute-form-same", b"GET https://a.example.com{p} HTTP/1.1\r\nHost: b.example.com\r\n"
     b"Connection: close\r\n", 200, "a.example.com", "direct_response", None),
    ("websocket-other", b"GET {p} HTTP/1.1\r\nHost: b.example.com\r\n" + WS, 421,
     "b.example.com", "misdirected_request", "listener_mismatch"),
    # Passed by sni-guard; the demo route answers directly (no upstream to upgrade to).
    ("websocket-same", b"GET {p} HTTP/1.1\r\nHost: A.example.com:443\r\n" + WS, 200,
     "A.example.com:443", "direct_response", None),
    ("http10-host-other", b"GET {p} HTTP/1.0\r\nHost: b.example.com\r\n", 421, "b.example.com",
     "misdirected_request", "listener_mismatch"),
    ("http10-host-same", b"GET {p} HTTP/1.0\r\nHost: a.example.com\r\n", 200, "a.example.com",
     "direct_response", None),
    # Without Host, Envoy refuses before the filter (no default_host_for_http_10 configured).
    ("http10-no-host", b"GET {p} HTTP/1.0\r\n", 400, "-", "missing_host_header", None),
    ("http11-no-host", b"GET {p} HTTP/1.1\r\nConnection: close\r\n", 400, "-",
     "missing_host_header", None),
]


@pytest.mark.parametrize("case,head,status,authority,details,reason", H1_CASES,
                         ids=[c[0] for c in H1_CASES])
def test_http1_framing(strict, case, head, status, authority, details, reason):
    path = unique_path(case)
    before = misdirected_counts(strict)
    got, line = h1(strict, path, head.replace(b"{p}", path.encode()))
    assert got == status, case
    assert f"authority={authority} " in line and f"details={details}" in line, line
    assert_counted(strict, before, reason, "http1")


@pytest.mark.parametrize("target,status,details,reason", [
    (B + ":443", 421, "misdirected_request", "listener_mismatch"),
    ("B.EXAMPLE.COM.:443", 421, "misdirected_request", "listener_mismatch"),
    (A + ":443", 200, "direct_response", None),
    # Envoy's codec refuses a CONNECT target without a port before any filter (DPE).
    (A + ":", 400, "http1.invalid_url", None),
])
def test_http1_connect(strict, target, status, details, reason):
    # CONNECT has no path: the log line is found by the authority and method (a request the
    # codec refused is logged without them).
    before = misdirected_counts(strict)
    needle = ((f"CONNECT authority={target} ", f"status={status} ") if status != 400
              else ("authority=- ", "flags=DPE", "status=400 "))
    seen = len(strict.wait_access_log(*needle, count=0, timeout=0))
    raw = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
    assert h1_exchange(strict.listener_port(), A, raw).status == status
    lines = strict.wait_access_log(*needle, count=seen + 1)
    assert len(lines) == seen + 1 and f"details={details}" in lines[-1]
    assert_counted(strict, before, reason, "http1")


# (id, :authority or None, extra headers, status, authority routed on, details, reason)
H2_CASES = [
    # Both present: Envoy routes on :authority (a `host` header is discarded), sni-guard reads
    # :authority: the two agree whichever way round the attacker puts the names.
    ("authority-same-host-other", A, [(b"host", B.encode())], 200, A, "direct_response", None),
    ("authority-other-host-same", B, [(b"host", A.encode())], 421, B, "misdirected_request",
     "listener_mismatch"),
    # Only `host`: Envoy promotes it to :authority before the filters.
    ("host-only-other", None, [(b"host", B.encode())], 421, B, "misdirected_request",
     "listener_mismatch"),
    ("host-only-same", None, [(b"host", A.encode())], 200, A, "direct_response", None),
    # Extended CONNECT (RFC 8441): Envoy turns it into a WebSocket upgrade (logged as GET).
    ("extended-connect-other", B, [(b":protocol", b"websocket"),
                                   (b"sec-websocket-version", b"13")],
     421, B, "misdirected_request", "listener_mismatch"),
    ("extended-connect-same", A, [(b":protocol", b"websocket"), (b"sec-websocket-version", b"13")],
     200, A, "direct_response", None),
]


@pytest.mark.parametrize("case,authority,extra,status,routed,details,reason", H2_CASES,
                         ids=[c[0] for c in H2_CASES])
def test_http2_framing(strict, case, authority, extra, status, routed, details, reason):
    path = unique_path(case)
    before = misdirected_counts(strict)
    connect = any(k == b":protocol" for k, _ in extra)
    with H2Connection(strict.listener_port(), sni=A) as conn:
        if connect:
            # Pseudo-headers first: :path is sent after :authority, before the regular headers.
            resp = conn.request(authority, method="CONNECT",
                                extra_headers=[(b":path", path.encode())] + extra)
        else:
            resp = conn.request(authority, path=path, extra_headers=extra)
    assert resp.status == status, case
    line = log_line(strict, path)
    assert f"authority={routed} " in line and f"details={details}" in line, line
    assert_counted(strict, before, reason, "http2")


@pytest.mark.parametrize("target,status,reason", [
    (B + ":443", 421, "listener_mismatch"),
    (A + ":443", 200, None),
])
def test_http2_connect(strict, target, status, reason):
    before = misdirected_counts(strict)
    needle = (f"CONNECT authority={target} ", f"status={status} ")
    seen = len(strict.wait_access_log(*needle, count=0, timeout=0))
    with H2Connection(strict.listener_port(), sni=A) as conn:
        assert conn.request(target, method="CONNECT", scheme="").status == status
    assert len(strict.wait_access_log(*needle, count=seen + 1)) == seen + 1
    assert_counted(strict, before, reason, "http2")


def test_http2_without_any_authority_is_a_protocol_error(strict):
    before = misdirected_counts(strict)
    dpe = ("flags=DPE", "details=http2.violation.of.messaging.rule")
    seen = len(strict.wait_access_log(*dpe, count=0, timeout=0))
    with pytest.raises(ConnectionError):
        with H2Connection(strict.listener_port(), sni=A) as conn:
            conn.request(None, path="/no-authority")
    assert len(strict.wait_access_log(*dpe, count=seen + 1)) == seen + 1
    assert_counted(strict, before, None, "http2")


def test_shipped_demo_refuses_http10_before_the_filter(shipped):
    # accept_http_10 is off by default: 426 from the codec, flag DPE, sni-guard never runs.
    dpe = ("flags=DPE", "details=low_version", "status=426")
    seen = len(shipped.wait_access_log(*dpe, count=0, timeout=0))
    resp = h1_exchange(shipped.listener_port(), A, b"GET / HTTP/1.0\r\nHost: b.example.com\r\n\r\n")
    assert resp.status == 426
    assert len(shipped.wait_access_log(*dpe, count=seen + 1)) == seen + 1


def test_shipped_demo_websocket_without_upgrade_config(shipped):
    # Without upgrade_configs Envoy does not treat the request as an upgrade; sni-guard still
    # checks it like any request.
    path = unique_path("ws-no-upgrade-config")
    raw = f"GET {path} HTTP/1.1\r\nHost: {B}\r\n".encode() + WS + b"\r\n"
    assert h1_exchange(shipped.listener_port(), A, raw).status == 421
    assert "details=misdirected_request" in log_line(shipped, path)
