"""Each manifest under istio/, programmed into real Envoy the way Istio would program an ingress
gateway serving two Gateways that share one certificate: without sni-guard the coalesced
request is a 404 NR, with it 421, the right host 200, over one HTTP/2 connection."""

from __future__ import annotations

import copy
import hashlib
import http.server
import threading

import pytest
import yaml

from harness.clients import H2Connection
from harness.envoy import WASM, Envoy, free_port

from istio_render import (ISTIO_REQUIRED_PREFIXES, apply_bootstrap_patches, documents,
                          envoyfilter_http_filter, extension_gateway, istio_gateway,
                          istio_stats_config, static_cluster, wasm_fields)

A, B = "a.example.com", "b.example.com"
EXTENSIONS = [("wasmplugin.yaml", 0), ("wasmplugin.yaml", 1), ("trafficextension.yaml", 0)]
# docs/istio.md tells users to look for these in the gateway's access log (Istio's format).
NR_LINE = " 404 NR route_not_found "


def coalesced(envoy: Envoy) -> list[int]:
    """A browser's sequence: a.example.com, then b.example.com and a.example.com again on the
    connection opened for a.example.com; then b.example.com on a connection of its own."""
    port = envoy.listener_port()
    with H2Connection(port, sni=A) as conn:
        statuses = [conn.request(A).status, conn.request(B).status, conn.request(A).status]
    with H2Connection(port, sni=B) as conn:
        statuses.append(conn.request(B).status)
    return statuses


def extension(name: str, index: int = 0, **changes) -> dict:
    doc = copy.deepcopy(documents(name)[index])
    wasm_fields(doc).update(changes)
    return doc


def test_without_sni_guard_the_gateway_answers_404_no_route():
    with Envoy(istio_gateway()) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        (line,) = envoy.wait_access_log(NR_LINE)
        # The authority is b.example.com, the connection's SNI a.example.com.
        assert f'"{B}"' in line and line.split()[-2] == A


@pytest.mark.parametrize("name,index", EXTENSIONS)
def test_extension_answers_421(name, index, tmp_path):
    doc = documents(name)[index]
    with Envoy(extension_gateway(doc, tmp_path)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
        assert envoy.wait_access_log(" 421 - misdirected_request ", f'"{B}"')
        assert not envoy.wait_access_log(NR_LINE, timeout=0.2)
        # Exported by Istio's default stats inclusion list (no label tags in plain Istio).
        assert envoy.wait_counter("sni_guard_misdirected_listener_mismatch_http2", 1) == 1


def test_plugin_name_is_optional(tmp_path):
    doc = extension("trafficextension.yaml")
    del doc["spec"]["wasm"]["pluginName"]          # Istio then sends root_id ""
    with Envoy(extension_gateway(doc, tmp_path)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]


def test_dry_run_changes_nothing_for_clients_and_counts(tmp_path):
    doc = extension("wasmplugin.yaml")
    doc["spec"]["pluginConfig"]["mode"] = "dry_run"
    with Envoy(extension_gateway(doc, tmp_path)) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        assert envoy.wait_counter("sni_guard_would_misdirect_listener_mismatch_http2", 1) == 1
        assert envoy.wait_counter("sni_guard_response_flag_NR", 1) == 1


def test_failed_pull_with_the_shipped_fail_strategy_denies_everything(tmp_path):
    # istio-agent could not pull the image: FAIL_RELOAD (as shipped) gets the deny-all filter.
    doc = documents("wasmplugin.yaml")[0]
    assert doc["spec"]["failStrategy"] == "FAIL_RELOAD"
    with Envoy(extension_gateway(doc, tmp_path, pulled=False)) as envoy:
        assert coalesced(envoy) == [403, 403, 403, 403]
        assert envoy.wait_access_log(" 403 - rbac_access_denied_matched_policy[none] ", count=4)


def test_failed_pull_with_fail_open_serves_without_the_check(tmp_path):
    doc = extension("wasmplugin.yaml", failStrategy="FAIL_OPEN")
    with Envoy(extension_gateway(doc, tmp_path, pulled=False)) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        assert envoy.wait_access_log(NR_LINE)


def test_envoyfilter_with_a_local_file_answers_421():
    entry = envoyfilter_http_filter(documents("envoyfilter-local.yaml")[0])
    with Envoy(istio_gateway([entry])) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
        assert envoy.wait_access_log(" 421 - misdirected_request ")


class ModuleServer:
    """Serves the built module over HTTP on 127.0.0.1, as the in-cluster web server would."""

    def __init__(self):
        body = WASM.read_bytes()
        self.sha256 = hashlib.sha256(body).hexdigest()
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("content-type", "application/wasm")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def gateway(self, sha256: str) -> dict:
        entry = envoyfilter_http_filter(
            documents("envoyfilter.yaml")[0],
            remote_url=f"http://127.0.0.1:{self.port}/sni-guard/0.1.0/sni_guard.wasm",
            remote_cluster="wasm_server", sha256=sha256)
        return istio_gateway([entry], clusters=[static_cluster("wasm_server", self.port)])

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def module_server():
    server = ModuleServer()
    yield server
    server.close()


def test_envoyfilter_fetches_the_module_checks_it_and_answers_421(module_server):
    with Envoy(module_server.gateway(module_server.sha256)) as envoy:
        assert module_server.hits >= 1
        assert coalesced(envoy) == [200, 421, 200, 200]


def test_envoyfilter_with_a_wrong_sha256_fails_closed(module_server):
    # Envoy fetches the module (retrying), finds the digest wrong and never runs it. The listener
    # still comes up; the filter fails closed: every request is 503, none reaches a route.
    with Envoy(module_server.gateway("0" * 64)) as envoy:
        assert module_server.hits >= 1
        assert coalesced(envoy) == [503, 503, 503, 503]
        assert envoy.wait_access_log(" 503 - wasm_fail_stream ", count=4)
        assert not envoy.wait_access_log(" 200 ", timeout=0.2)
        assert "Plugin sni_guard failed to load" in envoy.log()


def test_stats_tags_patch_gives_prometheus_labels(tmp_path):
    doc = extension("wasmplugin.yaml")
    doc["spec"]["pluginConfig"]["mode"] = "dry_run"
    gateway = apply_bootstrap_patches(extension_gateway(doc, tmp_path),
                                      documents("stats-tags.yaml")[0])
    with Envoy(gateway) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        assert envoy.wait_counter(
            'sni_guard_would_misdirect{reason="listener_mismatch",protocol="http2"}', 1) == 1
        assert envoy.wait_counter('sni_guard_response_flag{flag="NR"}', 1) == 1
        assert envoy.counter("sni_guard_response_flag_NR") == 0


def shipped_matcher() -> dict:
    (doc,) = documents("stats-inclusion.yaml")
    config = yaml.safe_load(doc["spec"]["template"]["metadata"]["annotations"][
        "proxy.istio.io/config"])
    return config["proxyStatsMatcher"]


WITHOUT_WASM = [p for p in ISTIO_REQUIRED_PREFIXES if p != "wasm"]


@pytest.mark.parametrize("case,matcher,required,visible", [
    # Istio as it is: its always-kept `wasm` prefix covers wasmcustom.sni_guard.*.
    ("istio default", None, ISTIO_REQUIRED_PREFIXES, True),
    # Without that prefix, the shipped matcher alone keeps the counters...
    ("shipped matcher", "shipped", WITHOUT_WASM, True),
    # ...and the obvious-looking prefix does not: the matcher sees `wasmcustom.`.
    ("naive prefix", {"inclusionPrefixes": ["sni_guard"]}, WITHOUT_WASM, False),
])
def test_which_stats_matchers_export_the_counters(case, matcher, required, visible, tmp_path):
    matcher = shipped_matcher() if matcher == "shipped" else matcher
    stats = istio_stats_config(matcher, required_prefixes=required)
    with Envoy(extension_gateway(documents("wasmplugin.yaml")[0], tmp_path,
                                 stats_config=stats)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
        # The access log line is written after the stats are; once it is there, so are they.
        assert envoy.wait_access_log(" 421 ")
        value = envoy.wait_counter("sni_guard_misdirected_listener_mismatch_http2", 1,
                                   timeout=2 if visible else 0.5)
        series = [k for k in envoy.prometheus() if k.startswith("sni_guard_")]
        assert (value == 1) == visible, case
        assert bool(series) == visible, case
