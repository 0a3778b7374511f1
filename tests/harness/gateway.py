"""Envoy configurations shaped like a Kubernetes Gateway API gateway: one filter chain per
listener, matched on SNI, all serving one shared certificate, and a default chain for the
catch-all listener. Built from the pieces of the shipped demo bootstrap (TLS context, access log,
the sni-guard filter), so they stay in step with it."""

from __future__ import annotations

import copy
import json
from typing import Callable

from .envoy import load_demo, wasm_filters


def _demo_pieces() -> tuple[dict, list, dict, dict]:
    demo = load_demo()
    listener = demo["static_resources"]["listeners"][0]
    chain = listener["filter_chains"][0]
    hcm = chain["filters"][0]["typed_config"]
    return demo, hcm["access_log"], chain["transport_socket"], wasm_filters(demo)[0]


def gateway_config(listeners: list[tuple[str, list[str]]], plugin: dict | None,
                   routes: Callable[[str], list[dict]] | None = None) -> dict:
    """A bootstrap with one chain per listener. `listeners` is [(name, hostnames)]; empty
    hostnames make the catch-all (the default chain). Each chain answers 200 with
    `listener <name>` for its own hostnames (or serves `routes(name)` when given) and has no
    route for anything else. `plugin=None` removes sni-guard; otherwise it is the plugin
    configuration (a dict, sent as JSON)."""
    demo, access_log, tls, guard = _demo_pieces()
    router = {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    filters = [router]
    if plugin is not None:
        guard = copy.deepcopy(guard)
        guard["typed_config"]["config"]["configuration"]["value"] = json.dumps(plugin)
        filters = [guard, router]

    def chain(name: str, hostnames: list[str]) -> dict:
        domains = []
        for h in hostnames or ["*"]:
            domains += [h, f"{h}:*"] if h != "*" else ["*"]
        return {
            "name": name,
            "transport_socket": copy.deepcopy(tls),
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name.replace("-", "_"),
                    "access_log": copy.deepcopy(access_log),
                    "http_filters": copy.deepcopy(filters),
                    "route_config": {"name": name, "virtual_hosts": [{
                        "name": name, "domains": domains,
                        "routes": routes(name) if routes else [
                            {"match": {"prefix": "/"}, "direct_response": {
                                "status": 200,
                                "body": {"inline_string": f"listener {name}\n"}}}],
                    }]},
                },
            }],
        }

    chains, default = [], None
    for name, hostnames in listeners:
        c = chain(name, hostnames)
        if hostnames:
            c["filter_chain_match"] = {"server_names": list(hostnames)}
            chains.append(c)
        else:
            default = c
    listener = copy.deepcopy(demo["static_resources"]["listeners"][0])
    listener["filter_chains"] = chains
    if default is not None:
        listener["default_filter_chain"] = default
    else:
        listener.pop("default_filter_chain", None)
    return {
        "admin": demo["admin"],
        "stats_config": demo["stats_config"],
        "static_resources": {"listeners": [listener]},
    }
