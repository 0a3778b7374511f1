"""Turns the manifests under istio/ into the Envoy configuration Istio would program for them,
inside a listener shaped like an Istio ingress gateway serving two `Gateway` resources that share
one certificate: one filter chain per Gateway server, matched on SNI, each with its own routes.

- WasmPlugin / TrafficExtension: Istio's agent pulls the image and hands Envoy a Wasm filter
  (through ECDS) that loads the module from a local file; `pluginConfig` becomes the JSON string
  configuration, `pluginName` the root id, `failStrategy` the failure policy, and phase AUTHN puts
  it first among the HTTP filters.
- EnvoyFilter: `patch.value` is inserted before the router as written; a `remote` code source is
  pointed at a local HTTP server (cluster and URL rewritten, sha256 kept as given).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from harness.envoy import REPO, WASM, _walk
from harness.gateway import gateway_config

# Two Istio Gateway servers sharing *.example.com's certificate, as in the incident.
CHAINS = [("https.443.https.gateway-a.team-a", ["a.example.com"]),
          ("https.443.https.gateway-b.team-b", ["b.example.com"])]

FAIL_STRATEGY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN",
                 "FAIL_RELOAD": "FAIL_RELOAD", None: "FAIL_CLOSED"}


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / "istio" / name).read_text()) if d]


def wasm_filter_from_extension(doc: dict, wasm: Path = WASM) -> tuple[dict, str]:
    """A WasmPlugin or TrafficExtension as the Wasm HTTP filter Istio delivers; and its phase."""
    spec = doc["spec"]
    fields = spec["wasm"] if doc["kind"] == "TrafficExtension" else spec
    name = f"{doc['metadata']['namespace']}.{doc['metadata']['name']}"
    config = {
        "name": name,
        "root_id": fields.get("pluginName", ""),
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm)}},
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(fields.get("pluginConfig", {})),
        },
        "failure_policy": FAIL_STRATEGY[fields.get("failStrategy")],
    }
    return ({"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": config}}, spec.get("phase", "UNSPECIFIED"))


def wasm_filter_from_envoyfilter(doc: dict, *, wasm: Path = WASM, remote_url: str | None = None,
                                 remote_cluster: str | None = None, sha256: str | None = None
                                 ) -> dict:
    """The EnvoyFilter's patch value, with its code source pointed at this machine."""
    patch = doc["spec"]["configPatches"][0]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == \
        "envoy.filters.http.router"
    value = copy.deepcopy(patch["patch"]["value"])
    code = value["typed_config"]["config"]["vm_config"]["code"]
    if "local" in code:
        code["local"]["filename"] = str(wasm)
    else:
        remote = code["remote"]
        remote["http_uri"]["uri"] = remote_url
        remote["http_uri"]["cluster"] = remote_cluster
        if sha256 is not None:
            remote["sha256"] = sha256
    return value


def gateway_with(filter_entry: dict | None, *, first: bool = False,
                 extra_clusters: list[dict] | None = None) -> dict:
    """The Istio-gateway-shaped bootstrap with `filter_entry` inserted (first, or before the
    router), or with no sni-guard at all."""
    config = gateway_config(CHAINS, None)
    if filter_entry is not None:
        for d in _walk(config):
            filters = d.get("http_filters")
            if isinstance(filters, list):
                at = 0 if first else len(filters) - 1
                filters.insert(at, copy.deepcopy(filter_entry))
    if extra_clusters:
        config["static_resources"]["clusters"] = extra_clusters
    return config
