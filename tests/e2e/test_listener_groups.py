"""Listener groups (Gateway API listener isolation) in real Envoy, over HTTP/2.

Envoy is configured like a Gateway API gateway: one filter chain per listener matched on SNI,
one shared certificate, a default chain. Every case runs in `enforce` and in `dry_run`, and again
with 10,000 unrelated listeners added to the plugin configuration: the decisions must not move.
And each in both forms: SNI-based, and chain-bound (each chain's instance names its listener).
"""

from __future__ import annotations

import pytest

from harness.clients import H2Connection
from harness.envoy import FORMS, Envoy
from harness.gateway import gateway_config

# Gateway A: the example of the policy issue, with a catch-all listener.
CHAINS_A = [
    ("catch-all", []),
    ("second", ["second-example.org"]),
    ("wildcard", ["*.wildcard.org"]),
    ("fourth", ["fourth-example.wildcard.org", "other.example.net"]),
]
PLUGIN_LISTENERS_A = [
    {"name": name, "hostnames": hosts} if hosts else {"name": name}
    for name, hosts in CHAINS_A
]

# Gateway B: no catch-all listener, SNI required; Envoy still has a fallback chain for clients
# without SNI.
CHAINS_B = [("fallback", [])] + CHAINS_A[1:]
PLUGIN_LISTENERS_B = PLUGIN_LISTENERS_A[1:]

MISMATCH, NO_SNI = "listener_mismatch", "missing_sni"

# (case, SNI, :authority, reason for a 421 or None, Envoy's answer when sni-guard lets it pass)
CASES_A = [
    ("same-listener", "second-example.org", "second-example.org", None, 200),
    ("same-listener-two-hostnames", "fourth-example.wildcard.org", "other.example.net", None, 200),
    ("wildcard-siblings", "a.wildcard.org", "b.wildcard.org", None, 200),
    ("wildcard-deeper-sibling", "a.wildcard.org", "x.y.wildcard.org", None, 200),
    ("case-variant", "a.wildcard.org", "B.Wildcard.ORG", None, 200),
    ("port-variant", "second-example.org", "second-example.org:443", None, 200),
    # The wildcard chain would happily route this exact name: the misrouting dry-run reveals.
    ("exact-inside-wildcard", "a.wildcard.org", "fourth-example.wildcard.org", MISMATCH, 200),
    ("wildcard-from-exact", "fourth-example.wildcard.org", "a.wildcard.org", MISMATCH, 404),
    ("wildcard-apex-is-not-wildcard", "a.wildcard.org", "wildcard.org", MISMATCH, 404),
    ("catch-all-siblings", "x.test", "y.test", None, 200),
    ("catch-all-to-listener", "x.test", "second-example.org", MISMATCH, 200),
    ("listener-to-catch-all", "second-example.org", "x.test", MISMATCH, 404),
    ("no-sni-allowed", None, "second-example.org", None, 200),
]
CASES_B = [
    ("unknown-host-passes", "second-example.org", "unknown.test", None, 404),
    ("mismatch", "second-example.org", "a.wildcard.org", MISMATCH, 404),
    ("no-sni-known-host", None, "second-example.org", NO_SNI, 200),
    ("no-sni-unknown-host", None, "unknown.test", None, 200),
]

EXTRA = 10_000


def extra_listeners(n: int) -> list[dict]:
    """Unrelated listeners: exact names and wildcards under .extra.test, none of which covers a
    name of the cases."""
    return [{"name": f"extra-{i}", "hostnames": [f"h{i}.extra.test", f"*.w{i}.extra.test"]}
            for i in range(n)]


VARIANTS = {
    # id: (chains, plugin listeners, missing_sni, cases)
    "A": (CHAINS_A, PLUGIN_LISTENERS_A, "allow", CASES_A),
    "B": (CHAINS_B, PLUGIN_LISTENERS_B, "reject", CASES_B),
}


# Chain-bound (`this_listener` on each chain) with the 10,000 extra listeners in enforce only, to
# keep the suite's run time down; the decisions do not depend on the mode's answer.
@pytest.fixture(scope="module", params=[
    (variant, mode, extra, form)
    for variant in VARIANTS for mode in ("enforce", "dry_run") for extra in (0, EXTRA)
    for form in FORMS if not (form == "chain" and extra and mode == "dry_run")
], ids=lambda p: f"{p[0]}-{p[1]}-{p[2]}extra-{p[3]}")
def gateway(request):
    variant, mode, extra, form = request.param
    chains, listeners, missing_sni, cases = VARIANTS[variant]
    plugin = {"mode": mode, "missing_sni": missing_sni,
              "listeners": listeners + extra_listeners(extra)}
    with Envoy(FORMS[form](gateway_config(chains, plugin))) as envoy:
        if extra:
            assert envoy.wait_log(f"{len(listeners) + extra} listeners")
        yield envoy, mode, cases


def counter(envoy: Envoy, mode: str, reason: str) -> float:
    name = "sni_guard_misdirected" if mode == "enforce" else "sni_guard_would_misdirect"
    return envoy.counter(f'{name}{{reason="{reason}",protocol="http2"}}')


def test_case_table(gateway):
    envoy, mode, cases = gateway
    port = envoy.listener_port()
    failures = []
    for case, sni, authority, reason, routed in cases:
        before = {r: counter(envoy, mode, r) for r in (MISMATCH, NO_SNI)}
        with H2Connection(port, sni=sni, verify_name=False) as conn:
            resp = conn.request(authority, path=f"/{case}")
        want = 421 if (reason and mode == "enforce") else routed
        if resp.status != want:
            failures.append(f"{case}: status {resp.status}, want {want}")
        for r in (MISMATCH, NO_SNI):
            expected = before[r] + (1 if r == reason else 0)
            got = envoy.wait_counter(
                ("sni_guard_misdirected" if mode == "enforce" else "sni_guard_would_misdirect")
                + f'{{reason="{r}",protocol="http2"}}', expected, timeout=2 if r == reason else 0.3)
            if got != expected:
                failures.append(f"{case}: {mode} counter {r} = {got}, want {expected}")
    assert not failures, "\n".join(failures)
    if mode == "dry_run":
        # Dry run decides the same way but never answers.
        assert counter(envoy, "enforce", MISMATCH) == counter(envoy, "enforce", NO_SNI) == 0
        assert "status=421" not in "\n".join(envoy.access_log())

