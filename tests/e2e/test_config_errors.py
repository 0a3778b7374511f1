"""An invalid plugin configuration makes Envoy refuse to start, naming the field and the reason."""

import pytest

from harness.envoy import EnvoyExited

from harness.envoy import envoy_with

CASES = [
    ('{"mode": "audit"}', "field `mode`: unknown mode `audit`"),
    ('{"mdoe": "enforce"}', "field `mdoe`: unknown field `mdoe`"),
    ('{"listeners": [{"hostnames": ["a.*.com"]}]}', "field `listeners[0].hostnames[0]`"),
    ('{"listeners": [{"hostnames": ["a.com"]}, {"hostnames": ["a.com"]}]}',
     "field `listeners[1].hostnames[0]`: hostname `a.com` already belongs to listeners[0]"),
    ('{"protocols": ["HTTP/9"]}', "field `protocols[0]`: unknown protocol `HTTP/9`"),
    ('{"missing_sni": "deny"}', "field `missing_sni`"),
    ("not json", "field `.`"),
    # Configurations that would look like protection and be none.
    ('{"listeners": []}', "field `listeners`: an empty list turns the check off"),
    ('{"mode": "dry_run", "listeners": [{"name": "all"}]}',
     "field `listeners`: a catch-all as the only listener"),
    ('{"listeners": [{"hostnames": ["a.com"], "mode": "audit"}]}',
     "field `listeners[0].mode`: unknown mode `audit`"),
]


@pytest.mark.parametrize("plugin_json,message", CASES)
def test_envoy_refuses_an_invalid_configuration(plugin_json, message):
    envoy = envoy_with(plugin_json)
    with pytest.raises(EnvoyExited) as exited:
        with envoy:
            pass
    log = exited.value.log
    assert "sni-guard: invalid configuration" in log
    assert message in log, log[-2000:]
    assert exited.value.code != 0


def test_a_valid_listener_configuration_starts():
    with envoy_with('{"mode": "dry_run", "listeners": [{"hostnames": ["*.example.com"]}]}') as envoy:
        assert envoy.wait_log("sni-guard: configured: mode DryRun, 1 listeners, 1 hostnames, loaded in ")
