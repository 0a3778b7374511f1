"""Fixtures for the adversarial suite: the demo bootstrap, opened up to everything a hostile
client can send (WebSocket and CONNECT upgrades, HTTP/2 extended CONNECT, HTTP/1.0), in real
Envoy. The helpers live in `harness.hostile`."""

from __future__ import annotations

import pytest

from harness.envoy import FORMS, Envoy, load_demo
from harness.hostile import GROUPS_NO_CATCH_ALL, hostile_config

# Every fixture runs in both forms of the configuration: SNI-based and chain-bound
# (`this_listener` per filter chain; `harness.envoy.chain_bound`).
BOTH_FORMS = {"scope": "package", "params": list(FORMS)}


@pytest.fixture(**BOTH_FORMS)
def strict(request):
    """Strict scope (host = SNI), enforce: the default configuration `{}`. Chain-bound: one
    listener per filter chain, as the shipped demo has."""
    with Envoy(FORMS[request.param](hostile_config({}))) as envoy:
        yield envoy


@pytest.fixture(**BOTH_FORMS)
def groups(request):
    """Listener groups without a catch-all, `missing_sni: reject` (which reads the SNI in
    both forms)."""
    with Envoy(FORMS[request.param](hostile_config(GROUPS_NO_CATCH_ALL))) as envoy:
        yield envoy


@pytest.fixture(**BOTH_FORMS)
def shipped(request):
    """The demo bootstrap as shipped (chain-bound; no upgrades, no HTTP/1.0), and SNI-based."""
    with Envoy(FORMS[request.param](load_demo())) as envoy:
        yield envoy
