"""Helpers for the adversarial suite (tests/adversarial): the demo bootstrap opened up to
everything a hostile client can send, and finding one request's log line and counters."""

from __future__ import annotations

import json
import time
import uuid

from .envoy import Envoy, _walk, load_demo, set_plugin_config

A, B = "a.example.com", "b.example.com"

# Listener groups over the demo's two chains: no catch-all (the no-SNI chain belongs to no
# listener) and clients without SNI refused.
GROUPS_NO_CATCH_ALL = {
    "listeners": [
        {"name": "gateway-a", "hostnames": [A]},
        {"name": "gateway-b", "hostnames": [B]},
    ],
    "missing_sni": "reject",
}


def hostile_config(plugin: dict | None = None) -> dict:
    """The demo bootstrap with upgrades allowed on every connection manager: WebSocket and
    CONNECT over HTTP/1.1, extended CONNECT over HTTP/2 (`allow_connect`), HTTP/1.0 accepted,
    and a CONNECT route answering 200 `connect ok` in every chain."""
    config = load_demo()
    for hcm in list(_walk(config)):
        if "stat_prefix" not in hcm or "route_config" not in hcm:
            continue
        hcm["upgrade_configs"] = [{"upgrade_type": "websocket"}, {"upgrade_type": "CONNECT"}]
        hcm["http2_protocol_options"] = {"allow_connect": True}
        hcm["http_protocol_options"] = {"accept_http_10": True}
        for vhost in hcm["route_config"]["virtual_hosts"]:
            vhost["routes"].insert(0, {
                "match": {"connect_matcher": {}},
                "direct_response": {"status": 200, "body": {"inline_string": "connect ok\n"}},
            })
    if plugin is not None:
        set_plugin_config(config, json.dumps(plugin))
    return config


def unique_path(tag: str) -> str:
    return f"/adv/{tag}/{uuid.uuid4().hex[:8]}"


def log_line(envoy: Envoy, path: str) -> str:
    """The one access log line of the request sent with `path`."""
    lines = envoy.wait_access_log(f"path={path} ")
    assert len(lines) == 1, f"{len(lines)} access log lines for {path}"
    return lines[0]


def misdirected_counts(envoy: Envoy) -> dict[str, float]:
    """Every `sni_guard_misdirected` series, by its labels."""
    return {k: v for k, v in envoy.prometheus().items()
            if k.startswith("sni_guard_misdirected{")}


def series(reason: str, protocol: str) -> str:
    return f'sni_guard_misdirected{{reason="{reason}",protocol="{protocol}"}}'


def assert_counted(envoy: Envoy, before: dict[str, float], reason: str | None,
                   protocol: str) -> None:
    """Exactly one 421 was counted, under `reason` and `protocol`; or none when `reason` is
    None. Counters reach the admin page asynchronously: waits a little for them."""
    want = dict(before)
    if reason is not None:
        key = series(reason, protocol)
        want[key] = want.get(key, 0.0) + 1
        envoy.wait_counter(key, want[key])
    else:
        time.sleep(0.1)
    after = misdirected_counts(envoy)
    changed = {k: after.get(k, 0.0) - want.get(k, 0.0) for k in set(after) | set(want)}
    assert all(v == 0 for v in changed.values()), {k: v for k, v in changed.items() if v}
