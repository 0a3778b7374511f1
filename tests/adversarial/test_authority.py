"""Hostile `:authority` / `Host` spellings on a connection opened for a.example.com, strict scope,
enforce mode. Each case states the answer: 200 (sni-guard passes, the route answers), 404
`route_not_found` (sni-guard passes, Envoy's router has no such virtual host), 421 (a name of
another host) or 400 `invalid_authority` (no valid `host[:port]`) with the
reason counted, or Envoy's own refusal before any filter runs (status, flags, details)."""

from __future__ import annotations

import pytest

from harness.clients import H2Connection, h1_exchange

from harness.hostile import A, assert_counted, log_line, misdirected_counts, unique_path

MISMATCH, INVALID = "listener_mismatch", "invalid_authority"
LONG_LABEL = "a" * 4096
LONG_NAME = "x." * 2042 + A  # 4097 bytes of well-formed labels ending in the SNI's name

# (id, authority, status, access log details, reason counted for a 421 or 400)
AUTHORITY_CASES = [
    ("mixed-case", "A.ExAmPlE.cOm", 200, "direct_response", None),
    ("mixed-case-port", "A.EXAMPLE.COM:443", 200, "direct_response", None),
    # sni-guard reads a trailing dot as the same name; Envoy's router matches domains literally
    # (no strip_trailing_host_dot in the demo), so the route table answers.
    ("trailing-dot", "a.example.com.", 404, "route_not_found", None),
    ("trailing-dot-port-case", "A.EXAMPLE.COM.:443", 404, "route_not_found", None),
    ("other-mixed-case", "B.Example.COM", 421, "misdirected_request", MISMATCH),
    ("other-trailing-dot", "b.example.com.", 421, "misdirected_request", MISMATCH),
    ("apex", "example.com", 421, "misdirected_request", MISMATCH),
    ("suffix-trick", "a.example.com.b.example.com", 421, "misdirected_request", MISMATCH),
    ("empty-port", "a.example.com:", 400, "invalid_authority", INVALID),
    ("port-abc", "a.example.com:abc", 400, "invalid_authority", INVALID),
    ("port-twice", "a.example.com:443:443", 400, "invalid_authority", INVALID),
    ("port-too-big", "a.example.com:65536", 400, "invalid_authority", INVALID),
    ("ipv6-literal", "[::1]", 421, "misdirected_request", MISMATCH),
    ("ipv6-literal-port", "[::1]:443", 421, "misdirected_request", MISMATCH),
    ("ipv6-unbracketed", "::1", 400, "invalid_authority", INVALID),
    ("ipv6-zone", "[fe80::1%25eth0]:443", 400, "invalid_authority", INVALID),
    ("percent-dots", "a%2eexample%2ecom", 400, "invalid_authority", INVALID),
    ("percent-letter", "%61.example.com", 400, "invalid_authority", INVALID),
    ("host-4k-label", LONG_LABEL, 400, "invalid_authority", INVALID),
    ("host-4k-name", LONG_NAME, 400, "invalid_authority", INVALID),
    ("punycode", "xn--bcher-kva.example.com", 421, "misdirected_request", MISMATCH),
    ("list", "a.example.com,b.example.com", 400, "invalid_authority", INVALID),
    ("wildcard-text", "*.example.com", 400, "invalid_authority", INVALID),
    ("double-dot", "a..example.com", 400, "invalid_authority", INVALID),
]

# Userinfo and non-ASCII bytes are refused by Envoy's codecs before sni-guard runs; over HTTP/1.1
# userinfo reaches the filter, which refuses it.
H1_ONLY_CASES = [
    ("userinfo", "user@a.example.com", 400, "invalid_authority", INVALID),
    ("userinfo-other", "b.example.com@a.example.com", 400, "invalid_authority", INVALID),
    ("userinfo-port", "a.example.com:443@b.example.com", 400, "invalid_authority", INVALID),
    ("empty", "", 400, "invalid_authority", INVALID),
]


@pytest.mark.parametrize("case,authority,status,details,reason",
                         AUTHORITY_CASES, ids=[c[0] for c in AUTHORITY_CASES])
def test_http2_authority(strict, case, authority, status, details, reason):
    port = strict.listener_port()
    before = misdirected_counts(strict)
    path = unique_path(case)
    with H2Connection(port, sni=A) as conn:
        resp = conn.request(authority, path=path)
    assert resp.status == status, case
    line = log_line(strict, path)
    assert f"details={details}" in line and "chain=gateway-a" in line, line[:300]
    assert_counted(strict, before, reason, "http2")


@pytest.mark.parametrize("case,authority,status,details,reason",
                         AUTHORITY_CASES + H1_ONLY_CASES,
                         ids=[c[0] for c in AUTHORITY_CASES + H1_ONLY_CASES])
def test_http1_host(strict, case, authority, status, details, reason):
    port = strict.listener_port()
    before = misdirected_counts(strict)
    path = unique_path(case)
    raw = f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
    resp = h1_exchange(port, A, raw)
    assert resp.status == status, case
    line = log_line(strict, path)
    assert f"details={details}" in line, line[:300]
    assert_counted(strict, before, reason, "http1")


@pytest.mark.parametrize("authority,details", [
    ("user@a.example.com", "http2.invalid.header.field"),
    ("b\u00fccher.example.com", "http2.invalid.header.field"),
    ("a.example.com\tb", "http2.invalid.header.field"),
], ids=["userinfo", "non-ascii", "tab"])
def test_http2_codec_refuses_before_the_filter(strict, authority, details):
    # nghttp2/oghttp2 validate :authority: the stream never reaches sni-guard, the connection
    # is closed, and the access log records a downstream protocol error.
    port = strict.listener_port()
    before = misdirected_counts(strict)
    dpe = ("flags=DPE", f"details={details}")
    seen = len(strict.wait_access_log(*dpe, count=0, timeout=0))
    with pytest.raises(ConnectionError):
        with H2Connection(port, sni=A) as conn:
            conn.request(authority.encode())
    assert len(strict.wait_access_log(*dpe, count=seen + 1)) == seen + 1
    assert_counted(strict, before, None, "http2")


def test_http1_non_ascii_host_refused_by_envoy(strict):
    port = strict.listener_port()
    before = misdirected_counts(strict)
    dpe = ("flags=DPE", "details=http.invalid_authority")
    seen = len(strict.wait_access_log(*dpe, count=0, timeout=0))
    raw = b"GET /utf8 HTTP/1.1\r\nHost: b\xc3\xbccher.example.com\r\nConnection: close\r\n\r\n"
    assert h1_exchange(port, A, raw).status == 400
    assert len(strict.wait_access_log(*dpe, count=seen + 1)) == seen + 1
    assert_counted(strict, before, None, "http1")
