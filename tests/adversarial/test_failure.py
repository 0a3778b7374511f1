"""What happens when the module cannot run: a corrupt .wasm, an invalid plugin configuration,
and a VM that crashes at run time, under each `failure_policy` of Envoy's Wasm PluginConfig
(`FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`, and unset). See docs/hostile.md."""

from __future__ import annotations

import pytest

from harness.clients import H2Connection
from harness.envoy import Envoy, EnvoyExited, load_demo, set_plugin_config, wasm_filters

from harness.hostile import A, B
from trap_module import trap_module

POLICIES = [None, "FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"]


def with_policy(policy: str | None, plugin: str = "{}") -> dict:
    """The demo bootstrap with `failure_policy` set (None: neither it nor the deprecated
    `fail_open`)."""
    config = set_plugin_config(load_demo(), plugin)
    for f in wasm_filters(config):
        plugin_config = f["typed_config"]["config"]
        plugin_config.pop("fail_open", None)
        plugin_config.pop("failure_policy", None)
        if policy is not None:
            plugin_config["failure_policy"] = policy
    return config


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p or "unset")
def test_corrupt_module_refuses_to_start(tmp_path, policy):
    # Whatever the policy, a module that does not load leaves Envoy without a configuration:
    # the static bootstrap is refused as a whole and Envoy exits, nothing is served.
    corrupt = tmp_path / "corrupt.wasm"
    corrupt.write_bytes(b"\x00asm\x01\x00\x00\x00 not a module")
    with pytest.raises(EnvoyExited) as exited:
        with Envoy(with_policy(policy), wasm=corrupt, ready_timeout=30):
            pass
    assert exited.value.code != 0
    assert "Unable to create Wasm plugin sni_guard" in exited.value.log


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p or "unset")
def test_invalid_configuration_refuses_to_start(policy):
    # on_configure answers false: the same refusal, with sni-guard's reason in the log.
    with pytest.raises(EnvoyExited) as exited:
        with Envoy(with_policy(policy, '{"listeners": [{"hostnames": ["a.*.com"]}]}'),
                   ready_timeout=30):
            pass
    log = exited.value.log
    assert "field `listeners[0].hostnames[0]`" in log
    assert "Unable to create Wasm plugin sni_guard" in log


# A stand-in module whose on_request_headers traps (sni-guard has no trap path). Three
# misdirected requests on one connection; what each one gets, by policy.
RUNTIME = {
    # The VM is dead after the first trap: every later request is refused, 503.
    None: [(503, "wasm_fail_stream")] * 3,
    "FAIL_CLOSED": [(503, "wasm_fail_stream")] * 3,
    # The filter is skipped after the first trap: requests go on as if it were not configured,
    # here 404 NR (the misdirected request is not answered 421 any more).
    "FAIL_OPEN": [(503, "wasm_fail_stream"), (404, "route_not_found"), (404, "route_not_found")],
    # A fresh VM for each new request; this module traps again every time, so every request
    # is refused. A filter that crashed once by accident would be serving again.
    "FAIL_RELOAD": [(503, "wasm_fail_stream")] * 3,
}


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p or "unset")
def test_runtime_crash_under_each_policy(tmp_path, policy):
    trap = tmp_path / "trap.wasm"
    trap.write_bytes(trap_module())
    with Envoy(with_policy(policy), wasm=trap) as envoy:
        got = []
        with H2Connection(envoy.listener_port(), sni=A) as conn:
            for i in range(3):
                path = f"/crash/{policy}/{i}"
                status = conn.request(B, path=path).status
                line = envoy.wait_access_log(f"path={path} ")
                assert len(line) == 1
                got.append((status, line[0].rsplit("details=", 1)[1].strip()))
        assert got == RUNTIME[policy]
        # Envoy writes its log asynchronously: wait for the line rather than read once.
        assert envoy.wait_log("Function: proxy_on_request_headers failed: Uncaught RuntimeError")
