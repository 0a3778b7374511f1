"""Fixtures for the end-to-end suite: the shipped demo bootstrap in real Envoy."""

import pytest

from harness.envoy import FORMS, Envoy, load_demo, remove_filter


@pytest.fixture(scope="module", params=list(FORMS))
def guarded(request):
    """The demo bootstrap as shipped, in both forms: SNI-based (the shipped configuration) and
    chain-bound (each chain's instance told its listener, `this_listener`)."""
    with Envoy(FORMS[request.param](load_demo())) as envoy:
        yield envoy


@pytest.fixture(scope="module")
def unguarded():
    """The same bootstrap with sni-guard removed: plain Envoy, the incident as users see it."""
    with Envoy(remove_filter(load_demo())) as envoy:
        yield envoy

