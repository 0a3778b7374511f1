"""Each manifest, programmed into real Envoy the way Istio would, fixes the incident: without
the filter 404 NR, with it 421, the right host 200 — over one HTTP/2 connection."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from harness.clients import H2Connection
from harness.envoy import WASM, Envoy, free_port

from istio_render import (documents, gateway_with, wasm_filter_from_envoyfilter,
                          wasm_filter_from_extension)

A, B = "a.example.com", "b.example.com"


def incident(envoy: Envoy) -> tuple[int, int]:
    with H2Connection(envoy.listener_port(), sni=A) as conn:
        return conn.request(A).status, conn.request(B).status


def test_without_the_filter_the_gateway_answers_404_no_route():
    with Envoy(gateway_with(None)) as envoy:
        assert incident(envoy) == (200, 404)
        assert envoy.wait_access_log(f"authority={B} ", "flags=NR")


@pytest.mark.parametrize("manifest,index", [
    ("wasmplugin.yaml", 0), ("wasmplugin.yaml", 1), ("trafficextension.yaml", 0)])
def test_extension_manifests_answer_421(manifest, index):
    entry, phase = wasm_filter_from_extension(documents(manifest)[index])
    assert phase == "AUTHN"
    assert entry["typed_config"]["config"]["failure_policy"] == "FAIL_RELOAD"
    with Envoy(gateway_with(entry, first=True)) as envoy:
        assert incident(envoy) == (200, 421)
        assert envoy.wait_access_log(f"authority={B} ", "details=misdirected_request")
        assert envoy.wait_counter(
            'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}', 1) == 1


def test_envoyfilter_local_file_answers_421():
    entry = wasm_filter_from_envoyfilter(documents("envoyfilter-local.yaml")[0])
    with Envoy(gateway_with(entry)) as envoy:
        assert incident(envoy) == (200, 421)


class _ModuleServer:
    """Serves the built module over HTTP on 127.0.0.1, as a web server would."""

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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cluster(self) -> dict:
        return {"name": "wasm_server", "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "wasm_server", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": self.port}}}}]}]}}

    def close(self):
        self.server.shutdown()


@pytest.fixture
def module_server():
    server = _ModuleServer()
    yield server
    server.close()


def test_envoyfilter_remote_module_is_fetched_checked_and_answers_421(module_server):
    entry = wasm_filter_from_envoyfilter(
        documents("envoyfilter.yaml")[0],
        remote_url=f"http://127.0.0.1:{module_server.port}/sni_guard.wasm",
        remote_cluster="wasm_server", sha256=module_server.sha256)
    config = gateway_with(entry, extra_clusters=[module_server.cluster()])
    with Envoy(config) as envoy:
        assert module_server.hits >= 1
        assert incident(envoy) == (200, 421)


def test_envoyfilter_remote_module_with_a_wrong_sha256_is_refused(module_server):
    entry = wasm_filter_from_envoyfilter(
        documents("envoyfilter.yaml")[0],
        remote_url=f"http://127.0.0.1:{module_server.port}/sni_guard.wasm",
        remote_cluster="wasm_server", sha256="0" * 64)
    config = gateway_with(entry, extra_clusters=[module_server.cluster()])
    # Envoy fetches the module (and retries), finds the digest wrong and never runs it. The
    # listener still comes up, but the filter fails closed: every request is answered 503, none
    # reaches the routes unguarded.
    with Envoy(config, ready_timeout=60) as envoy:
        assert incident(envoy) == (503, 503)
        assert module_server.hits >= 1
        assert "Plugin sni_guard failed to load" in envoy.log()
        assert not envoy.wait_access_log("status=200", timeout=0.5)
