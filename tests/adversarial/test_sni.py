"""The other side of the comparison: hostile server names, connections without one, and a
listener-groups configuration without a catch-all and with `missing_sni: reject`.

Envoy picks the filter chain from the SNI the TLS inspector read (lowercased, a trailing dot
kept: `a.example.com.` matches no `server_names` entry and lands on the default chain).
sni-guard must judge the connection as Envoy placed it: a name Envoy did not match to a listener
must not lend the request that listener's hosts (the Traefik CVE-2022-23632 pattern, where a
trailing dot in the SNI skipped the per-host TLS options while Host routing still matched)."""

from __future__ import annotations

import pytest

from harness.clients import H2Connection, h1_exchange

from harness.hostile import A, B, assert_counted, log_line, misdirected_counts, unique_path

HELLO_A, HELLO_NO_SNI = b"hello from a.example.com\n", b"hello without SNI\n"

# (id, SNI sent, :authority, status, chain Envoy selected, details, reason counted)
STRICT_CASES = [
    ("sni-upper", "A.EXAMPLE.COM", A, 200, "gateway-a", "direct_response", None),
    ("sni-upper-other-host", "A.Example.Com", B, 421, "gateway-a", "misdirected_request",
     "listener_mismatch"),
    # Trailing-dot SNI: Envoy puts the connection on the default (no-SNI) chain. Its route
    # table answers every host; sni-guard must not pass a.example.com there as if the
    # connection were gateway A's.
    ("sni-trailing-dot", "a.example.com.", A, 421, "no-sni", "misdirected_request",
     "listener_mismatch"),
    ("sni-trailing-dot-same-spelling", "a.example.com.", "a.example.com.", 421, "no-sni",
     "misdirected_request", "listener_mismatch"),
    ("sni-trailing-dot-other-host", "A.EXAMPLE.COM.", B, 421, "no-sni", "misdirected_request",
     "listener_mismatch"),
    ("sni-punycode", "xn--bcher-kva.example.com", "XN--BCHER-KVA.example.com", 200, "no-sni",
     "direct_response", None),
    ("sni-unrelated", "c.example.com", A, 421, "no-sni", "misdirected_request",
     "listener_mismatch"),
]


@pytest.mark.parametrize("case,sni,authority,status,chain,details,reason", STRICT_CASES,
                         ids=[c[0] for c in STRICT_CASES])
def test_server_name_spellings(strict, case, sni, authority, status, chain, details, reason):
    path = unique_path(case)
    before = misdirected_counts(strict)
    with H2Connection(strict.listener_port(), sni=sni, verify_name=False) as conn:
        resp = conn.request(authority, path=path)
    assert resp.status == status, case
    line = log_line(strict, path)
    assert f"chain={chain} " in line and f"details={details}" in line, line
    assert_counted(strict, before, reason, "http2")


# Listener groups [a.example.com], [b.example.com], no catch-all, missing_sni: reject.
# (id, SNI, :authority, status, details, reason)
GROUP_CASES = [
    ("same-listener", A, f"{A}:443", 200, "direct_response", None),
    ("other-listener", A, B, 421, "misdirected_request", "listener_mismatch"),
    ("other-listener-spelled", A, "B.EXAMPLE.COM.:443", 421, "misdirected_request",
     "listener_mismatch"),
    # A host of no listener passes: Envoy's routing answers (the chain has no such route).
    ("unknown-host", A, "unknown.test", 404, "route_not_found", None),
    ("invalid-host", A, "a.example.com:443:443", 400, "invalid_authority",
     "invalid_authority"),
    ("sni-trailing-dot", "a.example.com.", A, 421, "misdirected_request", "listener_mismatch"),
    ("no-sni-known-host", None, A, 421, "misdirected_request", "missing_sni"),
    ("no-sni-known-host-spelled", None, "B.example.com.:8443", 421, "misdirected_request",
     "missing_sni"),
    ("no-sni-unknown-host", None, "unknown.test", 200, "direct_response", None),
    ("no-sni-ip", None, "127.0.0.1", 200, "direct_response", None),
    ("no-sni-invalid-host", None, "a.example.com:abc", 400, "invalid_authority",
     "invalid_authority"),
]


@pytest.mark.parametrize("case,sni,authority,status,details,reason", GROUP_CASES,
                         ids=[c[0] for c in GROUP_CASES])
def test_listener_groups_without_catch_all(groups, case, sni, authority, status, details,
                                           reason):
    path = unique_path(case)
    before = misdirected_counts(groups)
    with H2Connection(groups.listener_port(), sni=sni, verify_name=False) as conn:
        resp = conn.request(authority, path=path)
    assert resp.status == status, case
    line = log_line(groups, path)
    assert f"details={details}" in line, line
    assert_counted(groups, before, reason, "http2")


@pytest.mark.parametrize("host,status,reason", [
    (A, 421, "missing_sni"),
    ("unknown.test", 200, None),
])
def test_listener_groups_no_sni_http1(groups, host, status, reason):
    path = unique_path("h1-no-sni")
    before = misdirected_counts(groups)
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    resp = h1_exchange(groups.listener_port(), None, raw)
    assert resp.status == status
    assert "chain=no-sni " in log_line(groups, path)
    assert_counted(groups, before, reason, "http1")
