"""sni-guard delivered the way Istio delivers a WasmPlugin: through Envoy's extension config
discovery (ECDS). Istio's control plane streams `TypedExtensionConfig` resources; here a
file-based config source stands in for it: the demo bootstrap's `sni_guard` filter becomes a
`config_discovery` entry whose source is a DiscoveryResponse file, and `push` replaces that
file atomically (write, then rename into the watched directory), which makes Envoy load it as an
update. Envoy's own accounting says whether it took the update:
`extension_config_discovery.http_filter.sni_guard.update_success` / `.update_rejected` (Envoy
1.40 also moves `config_reload` for a rejected update, so that one is not used)."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import yaml

from .envoy import WASM, Envoy, _walk, load_demo, wasm_filters

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STATS = "extension_config_discovery.http_filter.sni_guard"


def filter_config(plugin_json: str, wasm: Path = WASM,
                  failure_policy: str | None = "FAIL_RELOAD") -> dict:
    """The demo's sni-guard `Wasm` filter configuration with another plugin configuration,
    module file and `failure_policy` (None: unset)."""
    typed = copy.deepcopy(wasm_filters(load_demo())[0]["typed_config"])
    plugin = typed["config"]
    plugin["configuration"]["value"] = plugin_json
    plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
    plugin.pop("failure_policy", None)
    if failure_policy is not None:
        plugin["failure_policy"] = failure_policy
    return typed


class EcdsEnvoy(Envoy):
    """The demo bootstrap with sni-guard configured through ECDS from a file this object
    rewrites. Start it with a first configuration (Envoy waits for it before serving)."""

    def __init__(self, plugin_json: str = "{}", **kwargs):
        config = load_demo()
        # xDS subscriptions, file-based ones included, need a node identity.
        config["node"] = {"id": "sni-guard-test", "cluster": "sni-guard-test"}
        self.ecds_dir: Path | None = None
        self._version = 0
        first = filter_config(plugin_json)
        super().__init__(self._with_discovery(config), **kwargs)
        self.ecds_dir = self.workdir / "ecds"
        self.ecds_dir.mkdir()
        self.ecds_path = self.ecds_dir / "sni_guard.yaml"
        self._write(first)
        # The bootstrap was written before the directory existed: point it there now.
        for d in _walk(self.config):
            source = d.get("path_config_source")
            if source is not None:
                source["path"] = str(self.ecds_path)
                source["watched_directory"] = {"path": str(self.ecds_dir)}
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    @staticmethod
    def _with_discovery(config: dict) -> dict:
        for d in _walk(config):
            filters = d.get("http_filters")
            if not isinstance(filters, list):
                continue
            d["http_filters"] = [
                {"name": "sni_guard", "config_discovery": {
                    "config_source": {"resource_api_version": "V3",
                                      "path_config_source": {"path": "set-later"}},
                    "type_urls": [WASM_TYPE],
                }} if f.get("name") == "sni_guard" else f
                for f in filters
            ]
        return config

    def _write(self, typed_config: dict) -> None:
        self._version += 1
        response = {
            "version_info": str(self._version),
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": "sni_guard",
                "typed_config": typed_config,
            }],
        }
        tmp = self.ecds_dir / f".push-{self._version}.yaml"
        tmp.write_text(yaml.safe_dump(response, sort_keys=False))
        # A rename is atomic: Envoy never reads a half-written file.
        os.replace(tmp, self.ecds_path)

    def stat(self, name: str) -> int:
        """One of Envoy's ECDS counters for sni-guard (`update_success`, `update_rejected`)."""
        for line in self.admin(f"/stats?filter=^{STATS}\\.{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == f"{STATS}.{name}":
                return int(value)
        return 0

    def push(self, typed_config: dict, timeout: float = 15.0) -> str:
        """Writes a new filter configuration and waits until Envoy took it (`reloaded`) or
        refused it (`rejected`); `timeout` if it did neither."""
        reloads, fails = self.stat("update_success"), self.stat("update_rejected")
        self._write(typed_config)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stat("update_success") > reloads:
                return "reloaded"
            if self.stat("update_rejected") > fails:
                return "rejected"
            time.sleep(0.02)
        return "timeout"
