"""Each manifest under istio/, programmed into real Envoy the way Istio (of each release the
manifest is for) would program an ingress gateway serving two Gateways that share one
certificate: without sni-guard the coalesced request is a 404 NR, with it 421, the right host
200, over one HTTP/2 connection. istio_render.py names the Istio sources it follows."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import threading

import pytest

from harness.clients import H2Connection
from harness.envoy import WASM, Envoy, free_port

from istio_render import (RELEASES, Server, apply_envoyfilter, apply_envoyfilter_per_chain,
                          custom_ext_authz, documents,
                          extension_gateway, istio_gateway, istio_http_filters, static_cluster,
                          wasm_fields)

A, B = "a.example.com", "b.example.com"
# docs/istio.md tells users to look for these in the gateway's access log (Istio's format).
NR_LINE = " 404 NR route_not_found "


def wasmplugin_file(release: str) -> str:
    """The WasmPlugin manifest shipped for an Istio release."""
    return "wasmplugin-1.26.yaml" if release == "1.26" else "wasmplugin.yaml"


# (file, document, release): every extension document on every release it is for.
EXTENSIONS = [(wasmplugin_file(r), i, r) for r in RELEASES for i in (0, 1)] + [
    ("trafficextension.yaml", 0, "1.30")]


def coalesced(envoy: Envoy) -> list[int]:
    """A browser's sequence: a.example.com, then b.example.com and a.example.com again on the
    connection opened for a.example.com; then b.example.com on a connection of its own."""
    port = envoy.listener_port()
    with H2Connection(port, sni=A) as conn:
        statuses = [conn.request(A).status, conn.request(B).status, conn.request(A).status]
    with H2Connection(port, sni=B) as conn:
        statuses.append(conn.request(B).status)
    return statuses


def extension(name: str, index: int = 0, mode: str | None = None, **changes) -> dict:
    doc = copy.deepcopy(documents(name)[index])
    wasm_fields(doc).update(changes)
    if mode:
        wasm_fields(doc)["pluginConfig"]["mode"] = mode
    return doc


def envoyfilter(name: str, index: int = 0, mode: str | None = None) -> dict:
    doc = copy.deepcopy(documents(name)[index])
    if mode:
        config = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        plugin = json.loads(config["configuration"]["value"])
        plugin["mode"] = mode
        config["configuration"]["value"] = json.dumps(plugin)
    return doc


def test_without_sni_guard_the_gateway_answers_404_no_route():
    with Envoy(istio_gateway()) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        (line,) = envoy.wait_access_log(NR_LINE)
        # The authority is b.example.com, the connection's SNI a.example.com.
        assert f'"{B}"' in line and line.split()[-2] == A


@pytest.mark.parametrize("name,index,release", EXTENSIONS)
def test_shipped_extension_counts_in_dry_run_and_answers_421_in_enforce(name, index, release,
                                                                       tmp_path):
    doc = documents(name)[index]
    with Envoy(extension_gateway(doc, tmp_path, release=release)) as envoy:
        # As shipped: dry run. Nothing changes for clients; the would-be 421 is counted, under
        # the long name Istio exports (no stats_tags on an Istio gateway).
        assert coalesced(envoy) == [200, 404, 200, 200]
        assert envoy.wait_counter("sni_guard_would_misdirect_listener_mismatch_http2", 1) == 1
        assert envoy.wait_counter("sni_guard_response_flag_NR", 1) == 1
        assert not [k for k in envoy.prometheus() if k.startswith("sni_guard_would_misdirect{")]
    with Envoy(extension_gateway(extension(name, index, mode="enforce"), tmp_path,
                                 release=release)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
        assert envoy.wait_access_log(" 421 - misdirected_request ", f'"{B}"')
        assert not envoy.wait_access_log(NR_LINE, timeout=0.2)
        assert envoy.wait_counter("sni_guard_misdirected_listener_mismatch_http2", 1) == 1


def test_plugin_name_is_optional(tmp_path):
    doc = extension("trafficextension.yaml", mode="enforce")
    del doc["spec"]["wasm"]["pluginName"]          # Istio then sends root_id ""
    with Envoy(extension_gateway(doc, tmp_path)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]


@pytest.mark.parametrize("release", RELEASES)
def test_failed_pull_with_the_shipped_fail_strategy_denies_everything(release, tmp_path):
    # istio-agent could not pull the image: FAIL_RELOAD (1.27+) and FAIL_CLOSE (1.26) as
    # shipped get the deny-all filter.
    doc = documents(wasmplugin_file(release))[0]
    assert doc["spec"]["failStrategy"] == ("FAIL_CLOSE" if release == "1.26" else "FAIL_RELOAD")
    with Envoy(extension_gateway(doc, tmp_path, release=release, pulled=False)) as envoy:
        assert coalesced(envoy) == [403, 403, 403, 403]
        assert envoy.wait_access_log(" 403 - rbac_access_denied_matched_policy[none] ", count=4)


def test_failed_pull_with_fail_open_serves_without_the_check(tmp_path):
    doc = extension("wasmplugin.yaml", failStrategy="FAIL_OPEN", mode="enforce")
    with Envoy(extension_gateway(doc, tmp_path, pulled=False)) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        assert envoy.wait_access_log(NR_LINE)


@pytest.mark.parametrize("index", [0, 1])
def test_envoyfilter_with_a_local_file_answers_421(index):
    filters = apply_envoyfilter(istio_http_filters(),
                                envoyfilter("envoyfilter-local.yaml", index, mode="enforce"))
    assert filters[0]["name"] == "sni_guard"             # INSERT_FIRST
    with Envoy(istio_gateway(filters)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
        assert envoy.wait_access_log(" 421 - misdirected_request ")


def test_chain_bound_envoyfilter_guards_each_chain_with_its_own_listener():
    doc = copy.deepcopy(documents("envoyfilter-chain-bound.yaml")[0])
    bound = []
    for patch in doc["spec"]["configPatches"]:
        config = patch["patch"]["value"]["typed_config"]["config"]["configuration"]
        plugin = json.loads(config["value"])
        config["value"] = json.dumps({**plugin, "mode": "enforce"})
        bound.append((patch["match"]["listener"]["filterChain"]["sni"], plugin["this_listener"]))
    assert bound == [(A, "gateway-a"), (B, "gateway-b")]
    gateway = apply_envoyfilter_per_chain(istio_gateway(), doc)
    # Every chain got exactly one sni-guard, telling it its own listener.
    for chain in gateway["static_resources"]["listeners"][0]["filter_chains"]:
        guards = [f for f in chain["filters"][0]["typed_config"]["http_filters"]
                  if f["name"] == "sni_guard"]
        assert len(guards) == 1
        this = json.loads(guards[0]["typed_config"]["config"]["configuration"]["value"])[
            "this_listener"]
        assert dict(bound)[chain["filter_chain_match"]["server_names"][0]] == this
    with Envoy(gateway) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
        assert envoy.wait_access_log(" 421 - misdirected_request ")


class LocalServer:
    """An HTTP server on 127.0.0.1, in a thread, answering GET with a fixed body and recording
    the Host header of each request it got."""

    def __init__(self, body: bytes = b"", content_type: str = "text/plain"):
        self.hosts: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hosts.append(self.headers.get("host", ""))
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Authorizer(LocalServer):
    """An external authorization service (HTTP) that allows every request; `hosts` are the
    authorities it was asked about."""

    def __init__(self):
        super().__init__()
        self.cluster = static_cluster("ext_authz", self.port)


@pytest.fixture
def authorizer():
    server = Authorizer()
    yield server
    server.close()


# Envoy's ext_authz filter does not call the authorizer for a request without a route, so the
# order only shows where the wrong filter chain has a route for the host: here gateway-a also
# serves *.example.com, and b.example.com, sent on a.example.com's connection, would get
# gateway-a's wildcard route (a 200 from the wrong backend, not even a 404).
WILDCARD_SERVERS = [Server("gateway-a", "default", [A, "*.example.com"]),
                    Server("gateway-b", "default", [B])]
WILDCARD_LISTENERS = [{"name": "gateway-a", "hostnames": [A, "*.example.com"]},
                      {"name": "gateway-b", "hostnames": [B]}]


def test_custom_authorization_is_not_asked_about_a_request_without_route(authorizer, tmp_path):
    # The incident's gateway: no route for b.example.com on a.example.com's filter chain, so
    # Envoy's ext_authz lets the request through unasked and sni-guard answers 421.
    doc = extension("wasmplugin.yaml", mode="enforce")
    gateway = extension_gateway(doc, tmp_path, custom_authz=[custom_ext_authz("ext_authz")],
                                clusters=[authorizer.cluster])
    with Envoy(gateway) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
    assert authorizer.hosts == [A, A, B]


def test_custom_authorization_runs_before_an_authn_phase_extension(authorizer, tmp_path):
    # listener_builder.go: the CUSTOM ext_authz filter precedes AUTHN-phase extensions, so the
    # external authorizer is asked about the misdirected request before sni-guard answers 421.
    doc = extension("wasmplugin.yaml", mode="enforce")
    doc["spec"]["pluginConfig"]["listeners"] = WILDCARD_LISTENERS
    gateway = extension_gateway(doc, tmp_path, custom_authz=[custom_ext_authz("ext_authz")],
                                clusters=[authorizer.cluster], servers=WILDCARD_SERVERS)
    with Envoy(gateway) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
    assert authorizer.hosts == [A, B, A, B]


def test_envoyfilter_insert_first_runs_before_custom_authorization(authorizer):
    # INSERT_FIRST puts sni-guard ahead of everything Istio adds: the authorizer never sees the
    # misdirected request.
    doc = envoyfilter("envoyfilter-local.yaml", mode="enforce")
    config = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
    config["configuration"]["value"] = json.dumps(
        {"mode": "enforce", "listeners": WILDCARD_LISTENERS})
    filters = apply_envoyfilter(istio_http_filters(custom_authz=[custom_ext_authz("ext_authz")]),
                                doc)
    with Envoy(istio_gateway(filters, clusters=[authorizer.cluster],
                             servers=WILDCARD_SERVERS)) as envoy:
        assert coalesced(envoy) == [200, 421, 200, 200]
    assert authorizer.hosts == [A, A, B]


def test_without_sni_guard_the_wildcard_route_serves_the_wrong_host(authorizer):
    filters = istio_http_filters(custom_authz=[custom_ext_authz("ext_authz")])
    with Envoy(istio_gateway(filters, clusters=[authorizer.cluster],
                             servers=WILDCARD_SERVERS)) as envoy:
        assert coalesced(envoy) == [200, 200, 200, 200]
        (line,) = [ln for ln in envoy.access_log(4) if f'"{B}"' in ln and ln.split()[-2] == A]
        assert ' 200 - direct_response ' in line   # b.example.com answered by gateway-a's routes
    assert authorizer.hosts == [A, B, A, B]


class ModuleServer(LocalServer):
    """Serves the built module, as the in-cluster web server would."""

    def __init__(self):
        body = WASM.read_bytes()
        self.sha256 = hashlib.sha256(body).hexdigest()
        super().__init__(body, "application/wasm")

    @property
    def hits(self) -> int:
        return len(self.hosts)

    def gateway(self, sha256: str) -> dict:
        filters = apply_envoyfilter(
            istio_http_filters(), envoyfilter("envoyfilter.yaml", mode="enforce"),
            remote_url=f"http://127.0.0.1:{self.port}/sni-guard/0.1.0/sni_guard.wasm",
            remote_cluster="wasm_server", sha256=sha256)
        return istio_gateway(filters, clusters=[static_cluster("wasm_server", self.port)])


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


def test_hosts_left_out_of_listeners_pass_everywhere(tmp_path):
    # docs/istio.md, turning it off for one server: without gateway-b's listener, b.example.com
    # on a.example.com's connection is left to Envoy's routing (404 NR as without sni-guard),
    # while a.example.com on b.example.com's connection is still answered 421.
    doc = extension("wasmplugin.yaml", mode="enforce")
    doc["spec"]["pluginConfig"]["listeners"] = [{"name": "gateway-a", "hostnames": [A]}]
    with Envoy(extension_gateway(doc, tmp_path)) as envoy:
        assert coalesced(envoy) == [200, 404, 200, 200]
        port = envoy.listener_port()
        with H2Connection(port, sni=B) as conn:
            assert [conn.request(B).status, conn.request(A).status] == [200, 421]
