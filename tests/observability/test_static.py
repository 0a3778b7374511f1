"""Checks on the observability files that need no running Envoy: the PrometheusRule carries
exactly the rules of the plain rule file, promtool accepts both, every alert has firing and
non-firing unit-test cases, every runbook link lands on a heading of docs/observability.md, and
the dashboard is well-formed."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from harness.envoy import REPO

from .prometheus import PROMTOOL_BIN

OBS = REPO / "istio" / "observability"
RULES = OBS / "sni-guard.rules.yaml"
OPERATOR = OBS / "prometheusrule.yaml"
DASHBOARD = OBS / "grafana-dashboard.json"
DOCS = REPO / "docs" / "observability.md"


def alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
            if "alert" in r]


def test_prometheusrule_has_the_same_rules():
    rule_file = yaml.safe_load(RULES.read_text())
    operator = yaml.safe_load(OPERATOR.read_text())
    assert operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["kind"] == "PrometheusRule"
    assert operator["metadata"]["name"] == "sni-guard"
    assert operator["spec"] == rule_file


def test_prometheusrule_is_generated_from_the_current_rule_file():
    check = subprocess.run([sys.executable, str(OBS / "gen_prometheusrule.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_promtool_accepts_both_forms(tmp_path):
    spec = tmp_path / "prometheusrule-spec.yaml"
    spec.write_text(yaml.safe_dump(yaml.safe_load(OPERATOR.read_text())["spec"]))
    for path in (RULES, spec):
        out = subprocess.run([PROMTOOL_BIN, "check", "rules", str(path)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def unit_cases() -> list[dict]:
    cases = []
    for path in sorted((OBS / "tests").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../sni-guard.rules.yaml"], path
        for group in doc["tests"]:
            cases += group.get("alert_rule_test", [])
    return cases


@pytest.mark.parametrize("alert", [a["alert"] for a in alerts()])
def test_every_alert_has_firing_and_silent_unit_tests(alert):
    cases = [c for c in unit_cases() if c["alertname"] == alert]
    assert any(c.get("exp_alerts") for c in cases), f"{alert}: no case where it fires"
    assert any(not c.get("exp_alerts") for c in cases), f"{alert}: no case where it stays silent"


def test_alerts_are_documented_and_labelled():
    headings = {re.sub(r"[^a-z0-9_-]", "", h.strip().lower().replace(" ", "-"))
                for h in re.findall(r"^#+ (.+)$", DOCS.read_text(), re.M)}
    for a in alerts():
        assert a["labels"]["severity"] in ("info", "warning", "critical"), a["alert"]
        assert a.get("for"), a["alert"]
        assert {"summary", "description", "runbook"} <= set(a["annotations"]), a["alert"]
        doc, _, anchor = a["annotations"]["runbook"].partition("#")
        assert doc == "docs/observability.md" and anchor in headings, a["alert"]


def test_rules_use_the_labelled_metrics_and_the_gateway_labels():
    for a in alerts():
        expr = a["expr"]
        # The Istio names without stats_tags (sni_guard_misdirected_listener_mismatch_http2)
        # are not what the rules are written for.
        assert not re.search(r"sni_guard_(misdirected|would_misdirect|response_flag)_", expr)
        for clause in re.findall(r"\b(?:by|on) \(([^)]*)\)", expr):
            assert {"namespace", "pod"} <= {x.strip() for x in clause.split(",")}, a["alert"]


def test_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= variables
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(?!__)(\w+)", t["expr"]))
            assert used <= variables, (p["title"], used)
            assert 'namespace=~"$namespace"' in t["expr"] and 'pod=~"$pod"' in t["expr"]
    titles = " ".join(p["title"] for p in panels)
    for needed in ("421s by reason and protocol", "Would-be 421s", "Response flags",
                   "Share of requests misdirected"):
        assert needed in titles
