"""Two sni-guard configurations in one Wasm VM, in real Envoy.

Filter chains may carry sni-guard with different configurations under one `vm_id`; Envoy then
runs one VM per worker with a root context per configuration, and every request must be judged
by its own chain's configuration. sni-guard keeps the context -> configuration map for exactly
this case (src/filter.rs); here chain A enforces and chain B only observes (dry run), and
requests on both chains are interleaved on connections open at the same time.
"""

from __future__ import annotations

import json

from harness.clients import H2Connection
from harness.envoy import Envoy, wasm_filters
from harness.gateway import gateway_config

A, B = "a.example.com", "b.example.com"


def shared_vm_config() -> dict:
    config = gateway_config([("gateway-a", [A]), ("gateway-b", [B]), ("default", [])], {})
    listener = config["static_resources"]["listeners"][0]
    chain_b = next(c for c in listener["filter_chains"] if c["name"] == "gateway-b")
    guard_b = wasm_filters(chain_b)[0]["typed_config"]["config"]
    guard_b["configuration"]["value"] = json.dumps({"mode": "dry_run"})
    vm_ids = {f["typed_config"]["config"]["vm_config"]["vm_id"] for f in wasm_filters(listener)}
    assert len(vm_ids) == 1, vm_ids  # one VM for both configurations
    return config


def test_each_chain_is_judged_by_its_own_configuration():
    with Envoy(shared_vm_config()) as envoy:
        assert envoy.wait_log("configured: mode Enforce")
        assert envoy.wait_log("configured: mode DryRun")
        port = envoy.listener_port()
        rounds = 6
        for _ in range(rounds):
            # Both connections open at once: each request's context is created while both
            # configurations are live in the worker's VM.
            with H2Connection(port, sni=A) as on_a, H2Connection(port, sni=B) as on_b:
                assert on_a.request(A).status == 200
                assert on_b.request(A).status == 404  # dry run: routing answers, no route
                assert on_a.request(B).status == 421  # enforced
                assert on_b.request(B).status == 200
        enforce = 'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}'
        dry = 'sni_guard_would_misdirect{reason="listener_mismatch",protocol="http2"}'
        assert envoy.wait_counter(enforce, rounds) == rounds
        assert envoy.wait_counter(dry, rounds) == rounds
        assert envoy.wait_counter("sni_guard_requests_checked", 4 * rounds) == 4 * rounds
        assert envoy.wait_access_log("flags=NR", count=rounds)
