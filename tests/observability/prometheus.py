"""A real Prometheus (Debian's `prometheus` package) for tests: started on a free loopback port
with a generated configuration and a temporary TSDB, queried through its HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from harness.envoy import free_port
from harness.process import stop_process, wait_ready

PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "prometheus"
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool") or "promtool"


class Prometheus:
    """One Prometheus process. `targets` are (host:port, labels) pairs scraped every second on
    `metrics_path` (with `metric_relabel_configs`, if any); `rule_files` are loaded and evaluated
    every second. Use as a context manager."""

    def __init__(self, targets: list[tuple[str, dict[str, str]]], *,
                 metrics_path: str = "/stats/prometheus", rule_files: list[Path] = (),
                 metric_relabel_configs: list[dict] = (), ready_timeout: float = 30.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="sni-guard-prometheus-")
        self.workdir = Path(self._tmp.name)
        self.port = free_port()
        self.config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{
                "job_name": "envoy-stats",
                "metrics_path": metrics_path,
                "static_configs": [{"targets": [t], "labels": labels} for t, labels in targets],
                "metric_relabel_configs": list(metric_relabel_configs),
            }],
        }
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = self.workdir / "prometheus.log"
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS_BIN, f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        if wait_ready(self.proc, self.url("/-/ready"), self.ready_timeout,
                      lambda code: RuntimeError(f"prometheus exited with {code}:\n{self.log()}")):
            return self
        self.stop()
        raise TimeoutError(f"prometheus not ready after {self.ready_timeout}s:\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.proc)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "Prometheus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, path: str, **params) -> dict | list:
        """GET an `/api/v1/...` endpoint; returns its `data`, raises on an error status."""
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(self.url(path + ("?" + query if query else "")),
                                    timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """Instant query: the result vector, each item {'metric': {...}, 'value': [t, 'v']}."""
        data = self.api("/api/v1/query", query=promql)
        if data["resultType"] not in ("vector", "scalar"):
            raise RuntimeError(f"{promql}: unexpected result type {data['resultType']}")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def value(self, promql: str) -> float | None:
        """The single value of a query that returns at most one series; None when empty."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{promql}: {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    def wait_value(self, promql: str, want: float, timeout: float = 15.0) -> float | None:
        """Polls until the query's single value reaches `want` (scrapes run every second);
        returns the last value seen, which the caller compares exactly."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(promql)
            if (value is not None and value >= want) or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def wait(self, predicate, what: str, timeout: float = 15.0):
        """Polls `predicate()` until it returns something truthy; fails naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log()}")
            time.sleep(0.2)
