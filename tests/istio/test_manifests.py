"""Every manifest under istio/ validates strictly (unknown fields are errors) against the CRD
schemas of every Istio release it says it is for, docs/istio.md's table of manifest x release
says what these checks find, and the manifests carry what the Envoy tests and the docs expect.

`python tests/istio/test_manifests.py` prints the table for docs/istio.md."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `harness` when run as a script

from harness.envoy import REPO  # noqa: E402

import crds  # noqa: E402
from istio_render import ISTIO_DIR, documents, envoyfilter_patch  # noqa: E402

if not crds.CRDS.is_dir():
    pytest.skip(f"NOTICE: Istio CRD schemas not found at {crds.CRDS}; manifest validation skipped",
                allow_module_level=True)

RELEASES = list(crds.releases())
# Every YAML file users apply or pass to an installer.
FILES = sorted(p.relative_to(ISTIO_DIR).as_posix() for p in ISTIO_DIR.glob("*.yaml")) + [
    "observability/podmonitor.yaml"]
DOCS = REPO / "docs" / "istio.md"
TABLE_START, TABLE_END = "<!-- release-table:start -->", "<!-- release-table:end -->"


def is_istio(name: str) -> bool:
    """Whether the file holds Istio resources (validated against the CRDs) rather than other
    Kubernetes objects or Helm values."""
    return all(isinstance(d, dict) and d.get("kind") in crds.istio_kinds()
               for d in documents(name))


def claims(name: str) -> list[str]:
    return crds.claimed((ISTIO_DIR / name).read_text(), RELEASES)


def cell(name: str, release: str) -> str:
    verdict = crds.verdict(documents(name), release)
    if release in claims(name):
        return "✓" if verdict == "ok" else f"CLAIMED BUT {verdict}"
    return {"ok": "valid, use the other file", "no CRD": "✗ no such kind"}.get(
        verdict, "✗ rejected")


def release_table() -> str:
    head = "| manifest | " + " | ".join(RELEASES) + " |"
    rows = [head, "|---" * (len(RELEASES) + 1) + "|"]
    for name in FILES:
        if is_istio(name):
            cells = [cell(name, r) for r in RELEASES]
        else:
            cells = ["✓*" if r in claims(name) else "" for r in RELEASES]
        rows.append(f"| [`{name}`](../istio/{name}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def test_crds_of_every_release_were_found():
    assert RELEASES == ["1.26", "1.27", "1.28", "1.29", "1.30"], RELEASES
    for r in RELEASES:
        kinds = {k for _, k in crds.schemas(r)}
        assert {"WasmPlugin", "EnvoyFilter", "Gateway"} <= kinds, (r, kinds)
    assert {k for _, k in crds.schemas("1.30")} >= {"TrafficExtension"}
    assert "TrafficExtension" not in {k for _, k in crds.schemas("1.29")}


@pytest.mark.parametrize("name", FILES)
def test_every_file_says_which_releases_it_is_for(name):
    assert claims(name), name


@pytest.mark.parametrize("name,release", [(n, r) for n in FILES if is_istio(n)
                                          for r in claims(n)])
def test_manifest_validates_on_every_release_it_claims(name, release):
    for doc in documents(name):
        crds.validate(doc, release)


def test_docs_table_is_what_validation_finds():
    text = DOCS.read_text()
    assert TABLE_START in text and TABLE_END in text, "docs/istio.md lost its release table"
    shown = text.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert shown == release_table(), (
        "docs/istio.md's table differs; regenerate with python tests/istio/test_manifests.py")


def test_fail_reload_is_refused_by_1_26_and_accepted_from_1_27():
    doc = documents("wasmplugin.yaml")[0]
    assert doc["spec"]["failStrategy"] == "FAIL_RELOAD"
    with pytest.raises(jsonschema.ValidationError, match="FAIL_RELOAD"):
        crds.validate(doc, "1.26")
    for r in RELEASES[1:]:
        crds.validate(doc, r)


def test_no_manifest_patches_the_bootstrap():
    # `applyTo: BOOTSTRAP` is still in the EnvoyFilter schema, but since Istio 1.21 nothing
    # applies it (istio/istio#48693 removed the agent's bootstrap discovery): dead config.
    for name in FILES:
        for doc in documents(name):
            if isinstance(doc, dict) and doc.get("kind") == "EnvoyFilter":
                for patch in doc["spec"]["configPatches"]:
                    assert patch["applyTo"] != "BOOTSTRAP", name


@pytest.mark.parametrize("name,path,typo", [
    ("wasmplugin.yaml", ["spec"], "failStrategey"),
    ("wasmplugin.yaml", ["spec", "selector"], "matchLabel"),
    ("trafficextension.yaml", ["spec", "wasm"], "pluginConfg"),
    ("envoyfilter.yaml", ["spec", "configPatches", 0, "match"], "contxt"),
    ("envoyfilter-local.yaml", ["spec", "targetRefs", 0], "nmae"),
])
def test_a_typo_fails_validation_on_every_release(name, path, typo):
    index = 1 if path[:2] == ["spec", "targetRefs"] else 0
    for release in claims(name):
        doc = copy.deepcopy(documents(name)[index])
        node = doc
        for p in path:
            node = node[p]
        node[typo] = "x"
        with pytest.raises(jsonschema.ValidationError, match=typo):
            crds.validate(doc, release)


@pytest.mark.parametrize("field,value", [
    ("apiVersion", "extensions.istio.io/v1"),       # no such version served
    ("kind", "WasmPlugins"),
])
def test_a_wrong_api_version_or_kind_fails(field, value):
    doc = copy.deepcopy(documents("wasmplugin.yaml")[0])
    doc[field] = value
    with pytest.raises(jsonschema.ValidationError, match="not a served version"):
        crds.validate(doc, "1.30")


def test_a_wrong_enum_value_fails():
    doc = copy.deepcopy(documents("trafficextension.yaml")[0])
    doc["spec"]["wasm"]["failStrategy"] = "FAIL_CLOSED"     # Envoy's spelling, not Istio's
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(doc, "1.30")


@pytest.mark.parametrize("name,selector", [("trafficextension.yaml", "selector"),
                                           ("envoyfilter.yaml", "workloadSelector")])
def test_selector_and_target_refs_together_fail(name, selector):
    doc = copy.deepcopy(documents(name)[0])
    assert selector in doc["spec"]
    doc["spec"]["targetRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "name": "shared-gateway"}]
    with pytest.raises(jsonschema.ValidationError, match="only one of"):
        crds.validate(doc, "1.30")


def plugin_configs() -> dict[str, list[dict]]:
    """file -> the sni-guard configuration of each of its documents."""
    out = {}
    for name in ("wasmplugin.yaml", "wasmplugin-1.26.yaml"):
        out[name] = [d["spec"]["pluginConfig"] for d in documents(name)]
    out["trafficextension.yaml"] = [documents("trafficextension.yaml")[0]["spec"]["wasm"][
        "pluginConfig"]]
    for name in ("envoyfilter.yaml", "envoyfilter-local.yaml"):
        out[name] = [json.loads(envoyfilter_patch(d)["patch"]["value"]["typed_config"]["config"][
            "configuration"]["value"]) for d in documents(name)]
    return out


def test_every_manifest_ships_in_dry_run():
    # docs/istio.md: install in dry run, enforce once the counts are understood.
    for name, configs in plugin_configs().items():
        assert [c["mode"] for c in configs] == ["dry_run"] * len(configs), name


def test_selector_documents_share_one_config_and_target_ref_documents_another():
    configs = plugin_configs()
    by_selector = [c[0] for c in configs.values()]
    by_target_ref = [c[1] for c in configs.values() if len(c) > 1]
    assert all(c == by_selector[0] for c in by_selector), by_selector
    assert all(c == by_target_ref[0] for c in by_target_ref), by_target_ref
    assert len(by_target_ref) == 4


@pytest.mark.parametrize("name", ["wasmplugin.yaml", "wasmplugin-1.26.yaml",
                                  "envoyfilter.yaml", "envoyfilter-local.yaml"])
def test_label_and_gateway_api_documents(name):
    first, second = documents(name)
    selector = first["spec"].get("selector", {}).get("matchLabels") or first["spec"][
        "workloadSelector"]["labels"]
    # The label the `istio/gateway` Helm chart gives a release named istio-ingress.
    assert selector == {"istio": "ingress"} and first["metadata"]["namespace"] == "istio-ingress"
    assert second["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io",
                                             "kind": "Gateway", "name": "shared-gateway"}]
    assert second["metadata"]["namespace"] == "gateways"


def test_wasmplugins_differ_only_in_fail_strategy():
    for new, old in zip(documents("wasmplugin.yaml"), documents("wasmplugin-1.26.yaml")):
        assert new["spec"].pop("failStrategy") == "FAIL_RELOAD"
        assert old["spec"].pop("failStrategy") == "FAIL_CLOSE"
        assert new == old


def test_envoyfilters_insert_first_with_fail_reload():
    for name in ("envoyfilter.yaml", "envoyfilter-local.yaml"):
        for doc in documents(name):
            patch = envoyfilter_patch(doc)
            assert patch["patch"]["operation"] == "INSERT_FIRST"
            assert patch["patch"]["value"]["typed_config"]["config"]["failure_policy"] == \
                "FAIL_RELOAD"


def test_mounts_put_the_module_where_the_local_envoyfilter_reads_it():
    filename = Path(envoyfilter_patch(documents("envoyfilter-local.yaml")[0])["patch"]["value"][
        "typed_config"]["config"]["vm_config"]["code"]["local"]["filename"])
    (values,) = documents("gateway-helm-values.yaml")
    config_map, gateway = documents("gateway-api-infrastructure.yaml")
    overlay = yaml.safe_load(config_map["data"]["deployment"])["spec"]["template"]["spec"]
    (container,) = overlay["containers"]
    assert container["name"] == "istio-proxy"        # the gateway container istiod generates
    for volumes, mounts in ((values["volumes"], values["volumeMounts"]),
                            (overlay["volumes"], container["volumeMounts"])):
        assert volumes == [{"name": "sni-guard-wasm", "configMap": {"name": "sni-guard-wasm"}}]
        assert mounts == [{"name": "sni-guard-wasm", "mountPath": str(filename.parent),
                           "readOnly": True}]
    assert gateway["spec"]["infrastructure"]["parametersRef"] == {
        "group": "", "kind": "ConfigMap", "name": config_map["metadata"]["name"]}


def test_podmonitor_relabels_exactly_like_the_tested_scrape_config():
    # The Prometheus Operator turns metricRelabelings into metric_relabel_configs (camelCase to
    # snake_case keys); tests/observability runs those against a real Prometheus.
    (monitor,) = documents("observability/podmonitor.yaml")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http-envoy-prom" and endpoint["path"] == "/stats/prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == {"istio": "ingress"}
    rename = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    converted = [{rename.get(k, k): v for k, v in r.items()}
                 for r in endpoint["metricRelabelings"]]
    tested = yaml.safe_load((ISTIO_DIR / "observability" / "metric-relabel-untagged.yaml")
                            .read_text())
    assert converted == tested


if __name__ == "__main__":
    print(release_table())
