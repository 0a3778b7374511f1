"""Rolling sni-guard out safely, in real Envoy: a `mode` per listener, 400 (not 421) for an
authority that is no `host[:port]`, `missing_sni: reject` only where there is TLS, and counters
that equal what clients were answered."""

from __future__ import annotations

import copy
import json

import pytest

from harness.clients import H2Connection, h1_get, h1_plaintext_get
from harness.envoy import Envoy, load_demo, set_plugin_config
from harness.gateway import gateway_config

A, B, C = "a.example.com", "b.example.com", "c.example.com"

# Three host groups on one gateway: A enforced, B switched off (say its clients do not retry on
# 421), C without a mode of its own, so the top-level dry run.
MODES = {
    "mode": "dry_run",
    "listeners": [
        {"name": "gateway-a", "hostnames": [A], "mode": "enforce"},
        {"name": "gateway-b", "hostnames": [B], "mode": "off"},
        {"name": "gateway-c", "hostnames": [C]},
    ],
}


def series(family: str, reason: str, protocol: str = "http2") -> str:
    return f'sni_guard_{family}{{reason="{reason}",protocol="{protocol}"}}'


@pytest.fixture(scope="module")
def modes():
    config = gateway_config([("gateway-a", [A]), ("gateway-b", [B]), ("gateway-c", [C]),
                             ("fallback", [])], MODES)
    with Envoy(config) as envoy:
        yield envoy


# (SNI, :authority, status, access-log verdict, details): the mode is the one of the host's
# listener.
MODE_CASES = [
    (B, A, 421, "misdirected:listener_mismatch", "misdirected_request"),  # a: enforced
    (C, A, 421, "misdirected:listener_mismatch", "misdirected_request"),
    (A, B, 404, "-", "route_not_found"),         # b is off: as if sni-guard were absent
    (A, C, 404, "would_misdirect:listener_mismatch", "route_not_found"),  # c: dry run
    (A, A, 200, "-", "direct_response"),
    # No valid name: the SNI's listener decides (a: enforce, b: off).
    (A, "a.example.com,b.example.com", 400, "rejected:invalid_authority", "invalid_authority"),
    (B, "a.example.com:abc", 404, "-", "route_not_found"),
]


def test_each_listener_has_its_own_mode(modes):
    port = modes.listener_port()
    for i, (sni, authority, status, verdict, details) in enumerate(MODE_CASES):
        path = f"/modes/{i}"
        with H2Connection(port, sni=sni, verify_name=False) as conn:
            assert conn.request(authority, path=path).status == status, (sni, authority)
        line = modes.wait_access_log(f"path={path} ")
        assert len(line) == 1, line
        assert f" verdict={verdict} details={details}" in line[0], line
    # Exactly what was answered is counted as answered, the dry run as would-be; `off` nothing.
    want = {
        series("misdirected", "listener_mismatch"): 2,
        series("misdirected", "invalid_authority"): 1,
        series("would_misdirect", "listener_mismatch"): 1,
    }
    modes.wait_counter("sni_guard_requests_checked", len(MODE_CASES))
    got = {k: v for k, v in modes.prometheus().items()
           if k.startswith(("sni_guard_misdirected{", "sni_guard_would_misdirect{")) and v}
    assert got == want
    assert modes.counter("sni_guard_requests_checked") == len(MODE_CASES)


def test_dry_run_debug_line_names_the_authority(modes):
    port = modes.listener_port()
    with H2Connection(port, sni=A) as conn:
        assert conn.request(f"{C}:{port}", path="/debug").status == 404
    assert modes.wait_log(
        f'would answer 421 (listener_mismatch): sni "{A}", authority "{C}:{port}"')


def with_plaintext_listener(plugin: dict) -> dict:
    """The demo bootstrap plus a plaintext listener (port 80 style: no TLS, no TLS inspector)
    running the same filters as the TLS chains."""
    config = set_plugin_config(load_demo(), json.dumps(plugin))
    tls_listener = config["static_resources"]["listeners"][0]
    chain = copy.deepcopy(tls_listener["filter_chains"][0])
    chain.pop("filter_chain_match")
    chain.pop("transport_socket")
    chain["name"] = "plaintext"
    config["static_resources"]["listeners"].append({
        "name": "plaintext",
        "address": copy.deepcopy(tls_listener["address"]),
        "filter_chains": [chain],
    })
    return config


@pytest.mark.parametrize("scope", ["strict", "listeners"])
def test_missing_sni_reject_spares_plaintext_listeners(scope):
    plugin = {"missing_sni": "reject"}
    if scope == "listeners":
        plugin["listeners"] = [{"hostnames": [A]}, {"hostnames": [B]}]
    with Envoy(with_plaintext_listener(plugin)) as envoy:
        tls, plain = envoy.listener_port(0), envoy.listener_port(1)
        # Plaintext (health checks, port-80 redirects): no TLS, so no SNI to miss.
        assert h1_plaintext_get(plain, A, "/plain").status == 200
        line = envoy.wait_access_log("path=/plain ")
        assert len(line) == 1 and "chain=plaintext" in line[0], line
        # TLS without SNI: refused as configured.
        with H2Connection(tls, sni=None) as conn:
            assert conn.request(A).status == 421
        assert envoy.wait_counter(series("misdirected", "missing_sni"), 1) == 1
        assert envoy.counter(series("misdirected", "missing_sni", "http1")) == 0
        # Both requests came without SNI.
        assert envoy.wait_counter("sni_guard_requests_without_sni", 2) == 2


def test_requests_without_sni_counts_hosts_of_no_listener():
    # Listener groups without a catch-all, `missing_sni: reject`: a request without SNI for a
    # host of no listener passes (Envoy's routing answers); it still came without SNI.
    plugin = {"listeners": [{"hostnames": [A]}, {"hostnames": [B]}], "missing_sni": "reject"}
    with Envoy(set_plugin_config(load_demo(), json.dumps(plugin))) as envoy:
        port = envoy.listener_port()
        with H2Connection(port, sni=None) as conn:
            assert conn.request("unknown.test").status == 200
            assert conn.request(A).status == 421
            assert conn.request("a.example.com:abc").status == 400
        assert h1_get(port, None, "unknown.test").status == 200
        assert envoy.wait_counter("sni_guard_requests_without_sni", 4) == 4
        assert envoy.wait_counter("sni_guard_requests_checked", 4) == 4
