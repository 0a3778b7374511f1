"""Fixtures for the end-to-end suite: the shipped demo bootstrap in real Envoy."""

import pytest

from harness.envoy import Envoy, load_demo, remove_filter


@pytest.fixture(scope="module")
def guarded():
    """The demo bootstrap as shipped: sni-guard with its default (empty) configuration."""
    with Envoy(load_demo()) as envoy:
        yield envoy


@pytest.fixture(scope="module")
def unguarded():
    """The same bootstrap with sni-guard removed: plain Envoy, the incident as users see it."""
    with Envoy(remove_filter(load_demo())) as envoy:
        yield envoy

