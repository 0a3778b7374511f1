"""The manifests under istio/ validate against Istio 1.30's CRD schemas with unknown fields
treated as errors (the CRD schemas alone accept them; a real API server prunes or rejects them),
and carry what the Envoy tests expect."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.envoy import REPO, load_demo

from istio_render import documents

CRDS = Path(os.environ.get("ISTIO_CRDS", REPO.parent / "shared" / "istio-crds"))
MANIFESTS = ["wasmplugin.yaml", "trafficextension.yaml", "envoyfilter.yaml",
             "envoyfilter-local.yaml", "stats-tags.yaml"]

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
    for f in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
                out[(f"{group}/{v['name']}", kind)] = strict(spec)
    return out


SCHEMAS = load_crds()


def validate(doc: dict) -> None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in SCHEMAS:
        raise jsonschema.ValidationError(f"{key} is not a served version of a known CRD")
    if not set(doc) <= {"apiVersion", "kind", "metadata", "spec"}:
        raise jsonschema.ValidationError(f"unknown top-level fields {sorted(doc)}")
    md = doc.get("metadata") or {}
    if not (md.get("name") and md.get("namespace")):
        raise jsonschema.ValidationError("metadata.name and metadata.namespace are required")
    jsonschema.validate(doc["spec"], SCHEMAS[key])
    # The CEL rules the schemas carry (not checked by jsonschema) that these manifests touch.
    spec = doc["spec"]
    if "selector" in spec and "targetRefs" in spec:
        raise jsonschema.ValidationError("only one of targetRefs or selector can be set")
    if doc["kind"] == "TrafficExtension" and ("wasm" in spec) == ("lua" in spec):
        raise jsonschema.ValidationError("exactly one of wasm or lua must be set")


def test_schemas_were_found():
    kinds = {k for _, k in SCHEMAS}
    assert {"WasmPlugin", "TrafficExtension", "EnvoyFilter"} <= kinds, kinds


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates_strictly(name):
    docs = documents(name)
    assert docs
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("name,path,typo", [
    ("wasmplugin.yaml", ["spec"], "failStrategey"),
    ("wasmplugin.yaml", ["spec", "selector"], "matchLabel"),
    ("trafficextension.yaml", ["spec", "wasm"], "pluginConfg"),
    ("envoyfilter.yaml", ["spec", "configPatches", 0, "match"], "contxt"),
    ("stats-tags.yaml", ["spec", "configPatches", 0], "aplyTo"),
])
def test_a_typo_fails_validation(name, path, typo):
    doc = copy.deepcopy(documents(name)[0])
    node = doc
    for p in path:
        node = node[p]
    node[typo] = "x"
    with pytest.raises(jsonschema.ValidationError, match=typo):
        validate(doc)


@pytest.mark.parametrize("field,value", [
    ("apiVersion", "extensions.istio.io/v1"),       # no such version served
    ("kind", "WasmPlugins"),
])
def test_a_wrong_api_version_or_kind_fails(field, value):
    doc = copy.deepcopy(documents("wasmplugin.yaml")[0])
    doc[field] = value
    with pytest.raises(jsonschema.ValidationError, match="not a served version"):
        validate(doc)


def test_a_wrong_enum_value_fails():
    doc = copy.deepcopy(documents("trafficextension.yaml")[0])
    doc["spec"]["wasm"]["failStrategy"] = "FAIL_CLOSED"     # Envoy's spelling, not Istio's
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_selector_and_target_refs_together_fail():
    doc = copy.deepcopy(documents("trafficextension.yaml")[0])
    doc["spec"]["targetRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "name": "shared-gateway"}]
    with pytest.raises(jsonschema.ValidationError, match="only one of"):
        validate(doc)


def test_every_manifest_for_the_incident_carries_the_same_plugin_config():
    configs = [documents("wasmplugin.yaml")[0]["spec"]["pluginConfig"],
               documents("trafficextension.yaml")[0]["spec"]["wasm"]["pluginConfig"]]
    for name in ("envoyfilter.yaml", "envoyfilter-local.yaml"):
        value = documents(name)[0]["spec"]["configPatches"][0]["patch"]["value"]
        configs.append(json.loads(value["typed_config"]["config"]["configuration"]["value"]))
    assert all(c == configs[0] for c in configs), configs
    assert configs[0]["mode"] == "enforce"


def test_gateway_api_document_targets_a_gateway():
    doc = documents("wasmplugin.yaml")[1]
    assert doc["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io",
                                          "kind": "Gateway", "name": "shared-gateway"}]
    assert "selector" not in doc["spec"]


def test_stats_tags_are_the_demo_bootstraps():
    (patch,) = documents("stats-tags.yaml")[0]["spec"]["configPatches"]
    assert patch["applyTo"] == "BOOTSTRAP" and patch["patch"]["operation"] == "MERGE"
    tags = patch["patch"]["value"]["stats_config"]["stats_tags"]
    demo = load_demo()["stats_config"]["stats_tags"]
    assert [t["tag_name"] for t in tags] == ["reason", "protocol", "flag"]
    assert tags == demo


def test_stats_inclusion_is_a_deployment_patch_with_a_proxy_config():
    (doc,) = documents("stats-inclusion.yaml")
    ann = doc["spec"]["template"]["metadata"]["annotations"]
    assert set(ann) == {"proxy.istio.io/config"}
    proxy_config = yaml.safe_load(ann["proxy.istio.io/config"])
    assert set(proxy_config) == {"proxyStatsMatcher", "proxyMetadata"}
    assert set(proxy_config["proxyStatsMatcher"]) <= {
        "inclusionPrefixes", "inclusionSuffixes", "inclusionRegexps"}
    assert proxy_config["proxyMetadata"] == {"BOOTSTRAP_XDS_AGENT": "true"}
