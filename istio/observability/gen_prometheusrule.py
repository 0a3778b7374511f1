#!/usr/bin/env python3
"""Writes prometheusrule.yaml: the alerting rules of sni-guard.rules.yaml wrapped in a
prometheus-operator PrometheusRule, so that both forms always carry the same rules.

The rule file is copied as text (its comments explain each threshold) under `spec:`; only its
header comment, which is about the plain file, is replaced.

    python3 istio/observability/gen_prometheusrule.py          # rewrite prometheusrule.yaml
    python3 istio/observability/gen_prometheusrule.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = HERE / "sni-guard.rules.yaml"
OUTPUT = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from sni-guard.rules.yaml by gen_prometheusrule.py: edit that file, then run
# `make observability-rules`. The same alerting rules as a prometheus-operator PrometheusRule
# (kube-prometheus-stack). The operator only loads PrometheusRules its Prometheus selects:
# kube-prometheus-stack's default ruleSelector wants the label `release: <helm release name>`,
# and the namespace must be one its ruleNamespaceSelector covers. Adjust both to your install.
# Metric and label names are explained in sni-guard.rules.yaml and docs/observability.md.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: sni-guard
  namespace: istio-system
  labels:
    app.kubernetes.io/name: sni-guard
    release: prometheus
spec:
"""


def render(rules_text: str) -> str:
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = ["  " + line if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body) + "\n"


def main(argv: list[str]) -> int:
    text = render(RULES.read_text())
    if argv[1:] == ["--check"]:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run `make observability-rules`", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
