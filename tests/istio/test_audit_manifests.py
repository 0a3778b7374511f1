"""The manifests `sni-guard-audit` writes validate strictly against the CRD schemas of every Istio
release they are for: WasmPlugins (FAIL_RELOAD, 1.27-1.30; with --istio-release 1.26, FAIL_CLOSE)
and the merged Gateways of --merge (1.26-1.30). The binary is the one `make test-istio` builds."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from harness.envoy import REPO

import crds

if not crds.CRDS.is_dir():
    pytest.skip(f"NOTICE: Istio CRD schemas not found at {crds.CRDS}; validation skipped",
                allow_module_level=True)

AUDIT = os.environ.get("SNI_GUARD_AUDIT", str(REPO / "target" / "debug" / "sni-guard-audit"))
FIXTURES = REPO / "audit" / "tests" / "fixtures"
RELEASES = list(crds.releases())


def audit(*args: str) -> list[dict]:
    """The YAML documents the audit writes to standard output (exit 1: findings)."""
    run = subprocess.run([AUDIT, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


@pytest.mark.parametrize("fixture", ["incident.yaml", "ports.yaml", "gateway-api.yaml"])
@pytest.mark.parametrize("release", RELEASES)
def test_generated_wasmplugins_validate_on_their_release(fixture, release):
    docs = audit(str(FIXTURES / fixture), "--wasmplugin", "--istio-release", release)
    assert docs and {d["kind"] for d in docs} == {"WasmPlugin"}
    for doc in docs:
        assert doc["spec"]["failStrategy"] == ("FAIL_CLOSE" if release == "1.26"
                                               else "FAIL_RELOAD")
        crds.validate(doc, release)


def test_default_wasmplugins_are_refused_by_1_26():
    (doc,) = audit(str(FIXTURES / "incident.yaml"), "--wasmplugin")
    assert crds.verdict([doc], "1.26").startswith("rejected")
    for release in RELEASES[1:]:
        crds.validate(doc, release)


@pytest.mark.parametrize("release", RELEASES)
def test_merged_gateways_and_fallback_validate_on_every_release(release):
    docs = audit(str(FIXTURES / "merge.yaml"), "--merge", "--istio-release", release)
    assert [d["kind"] for d in docs] == ["Gateway", "WasmPlugin"]
    for doc in docs:
        crds.validate(doc, release)
