"""The manifests under istio/ validate against Istio 1.30's CRD schemas, unknown fields being
errors (a real API server prunes or rejects them; the CRD schemas alone would accept them)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.envoy import REPO, load_demo

CRDS = Path(os.environ.get("ISTIO_CRDS", REPO.parent / "shared" / "istio-crds"))
MANIFESTS = ["wasmplugin.yaml", "trafficextension.yaml", "envoyfilter.yaml",
             "envoyfilter-local.yaml"]

if not CRDS.is_dir():
    pytest.skip(f"NOTICE: Istio CRD schemas not found at {CRDS}; manifest validation skipped",
                allow_module_level=True)


def strict(schema):
    """Every object schema that lists its properties and does not preserve unknown fields
    refuses other properties."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def load_crds() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict schema of `spec`, for every served version."""
    out = {}
    for f in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
                out[(f"{group}/{v['name']}", kind)] = strict(spec)
    return out


SCHEMAS = load_crds() if CRDS.is_dir() else {}


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / "istio" / name).read_text()) if d]


def validate(doc: dict) -> None:
    key = (doc["apiVersion"], doc["kind"])
    assert key in SCHEMAS, f"{key} is not a served version of a known CRD"
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, sorted(doc)
    assert doc["metadata"].get("name") and doc["metadata"].get("namespace")
    jsonschema.validate(doc["spec"], SCHEMAS[key])


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates_strictly(name):
    docs = documents(name)
    assert docs
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("name,path,typo", [
    ("wasmplugin.yaml", ["spec"], "failStrategey"),
    ("trafficextension.yaml", ["spec", "wasm"], "pluginConfg"),
    ("envoyfilter.yaml", ["spec", "configPatches", 0, "match"], "contxt"),
])
def test_a_typo_fails_validation(name, path, typo):
    doc = copy.deepcopy(documents(name)[0])
    node = doc
    for p in path:
        node = node[p]
    node[typo] = "x"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_plugin_configs_are_accepted_by_the_filter_parser():
    # The JSON the manifests hand to the filter must be what the filter accepts: the same
    # document in every manifest (WasmPlugin/TrafficExtension pluginConfig, EnvoyFilter string).
    configs = []
    for doc in documents("wasmplugin.yaml")[:1]:
        configs.append(doc["spec"]["pluginConfig"])
    configs.append(documents("trafficextension.yaml")[0]["spec"]["wasm"]["pluginConfig"])
    for name in ("envoyfilter.yaml", "envoyfilter-local.yaml"):
        value = documents(name)[0]["spec"]["configPatches"][0]["patch"]["value"]
        configs.append(json.loads(value["typed_config"]["config"]["configuration"]["value"]))
    assert all(c == configs[0] for c in configs), configs


def test_stats_tags_match_the_demo_bootstrap():
    cm = documents("stats-bootstrap.yaml")[0]
    tags = json.loads(cm["data"]["custom_bootstrap.json"])["stats_config"]["stats_tags"]
    assert tags == load_demo()["stats_config"]["stats_tags"]
    patch = documents("gateway-stats-patch.yaml")[0]
    ann = patch["spec"]["template"]["metadata"]["annotations"]
    assert ann["sidecar.istio.io/bootstrapOverride"] == cm["metadata"]["name"]
    matcher = yaml.safe_load(ann["proxy.istio.io/config"])["proxyStatsMatcher"]
    assert matcher == {"inclusionRegexps": [".*sni_guard.*"]}
