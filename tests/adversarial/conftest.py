"""Fixtures for the adversarial suite: the demo bootstrap, opened up to everything a hostile
client can send (WebSocket and CONNECT upgrades, HTTP/2 extended CONNECT, HTTP/1.0), in real
Envoy. The helpers live in `harness.hostile`."""

from __future__ import annotations

import pytest

from harness.envoy import Envoy, load_demo
from harness.hostile import GROUPS_NO_CATCH_ALL, hostile_config


@pytest.fixture(scope="package")
def strict():
    """Strict scope (host = SNI), enforce: the shipped plugin configuration."""
    with Envoy(hostile_config()) as envoy:
        yield envoy


@pytest.fixture(scope="package")
def groups():
    """Listener groups without a catch-all, `missing_sni: reject`."""
    with Envoy(hostile_config(GROUPS_NO_CATCH_ALL)) as envoy:
        yield envoy


@pytest.fixture(scope="package")
def shipped():
    """The demo bootstrap exactly as shipped (no upgrades, no HTTP/1.0)."""
    with Envoy(load_demo()) as envoy:
        yield envoy
