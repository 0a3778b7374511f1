"""Fixtures for the end-to-end suite: the shipped demo bootstrap in real Envoy."""

import pytest

from harness.envoy import FORMS, Envoy, load_demo, remove_filter, set_plugin_config

# The demo's three ways of guarding: as shipped (chain-bound), SNI-based (the same listeners,
# no `this_listener`), and strict host = SNI (the default configuration, `{}`).
DEMO_FORMS = {
    "chain": lambda: FORMS["chain"](load_demo()),
    "sni": lambda: FORMS["sni"](load_demo()),
    "strict": lambda: set_plugin_config(load_demo(), "{}"),
}


@pytest.fixture(scope="module", params=list(DEMO_FORMS))
def guarded(request):
    """The demo bootstrap, sni-guard configured in each of DEMO_FORMS."""
    with Envoy(DEMO_FORMS[request.param]()) as envoy:
        yield envoy


@pytest.fixture(scope="module")
def unguarded():
    """The same bootstrap with sni-guard removed: plain Envoy, the incident as users see it."""
    with Envoy(remove_filter(load_demo())) as envoy:
        yield envoy

