"""Strict validation of Kubernetes manifests against the CRD schemas of each Istio release.

The schemas are those in ../shared/istio-crds/<release>/ (override with ISTIO_CRDS), one folder per
Istio release, as each release's `manifests/charts/base/files/crd-all.gen.yaml` shipped them.
A real API server prunes or rejects unknown fields, and the CRD schemas alone accept them, so every
object schema that lists its properties is made to refuse others. The CEL rules
(`x-kubernetes-validations`) that the manifests here touch are checked by hand.

Each file under istio/ says which releases it is for, in a comment line:
`# Istio releases: 1.27-1.30` (a range) or `# Istio releases: 1.26` (one).
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from harness.envoy import REPO

CRDS = Path(os.environ.get("ISTIO_CRDS", REPO.parent / "shared" / "istio-crds"))
CLAIM = re.compile(r"^# Istio releases: (\d+\.\d+)(?:-(\d+\.\d+))?\b", re.M)


def minor(release: str) -> tuple[int, int]:
    major, mnr = release.split(".")[:2]
    return int(major), int(mnr)


def releases() -> dict[str, Path]:
    """'1.26' -> the folder of the newest patch release of 1.26 with CRDs, oldest first."""
    folders = [d for d in CRDS.iterdir() if d.is_dir() and re.fullmatch(r"\d+\.\d+\.\d+", d.name)]
    by_minor = {}
    for d in sorted(folders, key=lambda d: tuple(map(int, d.name.split(".")))):
        by_minor[".".join(d.name.split(".")[:2])] = d
    return dict(sorted(by_minor.items(), key=lambda kv: minor(kv[0])))


def claimed(text: str, all_releases: list[str]) -> list[str]:
    """The releases a file's `# Istio releases:` line names, among those with CRDs."""
    m = CLAIM.search(text)
    if not m:
        raise ValueError("no '# Istio releases: A[-B]' line")
    low, high = minor(m.group(1)), minor(m.group(2) or m.group(1))
    return [r for r in all_releases if low <= minor(r) <= high]


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


@cache
def schemas(release: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict schema of `spec`, for every served version of every CRD of
    the release."""
    out = {}
    for f in sorted(releases()[release].glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]
                out[(f"{group}/{v['name']}", kind)] = strict(spec)
    return out


def istio_kinds() -> set[str]:
    """Every kind any release has a CRD for."""
    return {k for r in releases() for _, k in schemas(r)}


def validate(doc: dict, release: str) -> None:
    """Raises jsonschema.ValidationError when the release's API server would refuse `doc`."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in schemas(release):
        raise jsonschema.ValidationError(
            f"{key} is not a served version of a CRD of Istio {release}")
    if not set(doc) <= {"apiVersion", "kind", "metadata", "spec"}:
        raise jsonschema.ValidationError(f"unknown top-level fields {sorted(doc)}")
    md = doc.get("metadata") or {}
    if not (md.get("name") and md.get("namespace")):
        raise jsonschema.ValidationError("metadata.name and metadata.namespace are required")
    jsonschema.validate(doc["spec"], schemas(release)[key])
    # The CEL rules of the schemas (not checked by jsonschema) that these manifests touch.
    spec = doc["spec"]
    if doc["kind"] == "EnvoyFilter" and "workloadSelector" in spec and "targetRefs" in spec:
        raise jsonschema.ValidationError("only one of targetRefs or workloadSelector can be set")
    if "selector" in spec and "targetRefs" in spec:
        raise jsonschema.ValidationError("only one of targetRefs or selector can be set")
    for ref in spec.get("targetRefs", []):
        if ref.get("namespace"):
            raise jsonschema.ValidationError("cross namespace referencing is not supported")
    if doc["kind"] == "TrafficExtension" and ("wasm" in spec) == ("lua" in spec):
        raise jsonschema.ValidationError("exactly one of wasm or lua must be set")


def verdict(docs: list[dict], release: str) -> str:
    """'ok', 'no CRD' (a kind the release does not have) or the first validation error."""
    for doc in docs:
        if doc.get("kind") not in {k for _, k in schemas(release)}:
            return "no CRD"
        try:
            validate(doc, release)
        except jsonschema.ValidationError as e:
            return f"rejected: {e.message}"
    return "ok"
