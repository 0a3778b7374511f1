"""What Istio would program into an ingress gateway's Envoy for the manifests under istio/.

Two halves:

- An Envoy bootstrap shaped like an Istio ingress gateway serving two `Gateway` resources that
  share one certificate (`istio_gateway`): listener `0.0.0.0_8443` with the TLS inspector, one
  filter chain per Gateway server matched on SNI `server_names`, each with its own route table
  (`https.443.https.gateway-a.default`), virtual host `a.example.com:443` with domains
  `a.example.com` and `a.example.com:*`, HTTP connection manager stat prefix
  `outbound_0.0.0.0_8443`, the upstream filters Istio puts before the router (CORS, fault),
  Istio's default access log format and Istio's bootstrap `stats_config` (its tag regexes and the
  stats inclusion list every Istio proxy starts with).
- Converters from each manifest to the filter Istio hands that Envoy:
  WasmPlugin / TrafficExtension -> an ECDS resource named like Istio names it
  (`extensions.istio.io/wasmplugin/<ns>.<name>`), carrying the Wasm filter istiod builds
  (pluginConfig as compact JSON in a StringValue, pluginName as root_id, failStrategy as
  failure_policy) with the `oci://` code source replaced by the local file istio-agent would have
  pulled; or, when the pull fails, the RBAC filter istio-agent sends instead. Phase AUTHN puts
  it first among the HTTP filters. EnvoyFilter -> `patch.value` inserted before the router, a
  `remote` code source pointed at a local HTTP server.

Facts taken from Istio's sources (not copied code): pilot/pkg/model/extensions.go (plugin
config conversion), pkg/wasm/convert.go (agent rewrite and RBAC fallback),
tools/packaging/common/envoy_bootstrap.json and pkg/bootstrap/config.go (stats_config),
pilot/pkg/model/telemetry_logging.go (access log format).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from harness.envoy import CERTS, REPO, WASM, free_port

ISTIO_DIR = REPO / "istio"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}

# Istio's default text access log format (EnvoyTextLogFormat).
ISTIO_ACCESS_LOG_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n")

# Istio's bootstrap stats tags (without the per-mesh extraStatTags).
ISTIO_STATS_TAGS = [
    {"tag_name": "cluster_name", "regex": r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"},
    {"tag_name": "tcp_prefix", "regex": r"^tcp\.((.*?)\.)\w+?$"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
    {"tag_name": "http_conn_manager_listener_prefix",
     "regex": r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
    {"tag_name": "http_conn_manager_prefix",
     "regex": r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
    {"tag_name": "listener_address",
     "regex": r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
    {"tag_name": "mongo_prefix",
     "regex": r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"},
    {"tag_name": "cache", "regex": r"(cache\.(.+?)\.)"},
    {"tag_name": "component", "regex": r"(component\.(.+?)\.)"},
    {"tag_name": "tag", "regex": r"(tag\.(.+?);\.)"},
    {"tag_name": "wasm_filter", "regex": r"(wasm_filter\.(.+?)\.)"},
    {"tag_name": "authz_enforce_result", "regex": r"rbac(\.(allowed|denied))"},
    {"tag_name": "authz_dry_run_action", "regex": r"(\.istio_dry_run_(allow|deny)_)"},
    {"tag_name": "authz_dry_run_result", "regex": r"(\.shadow_(allowed|denied))"},
]

# The stats every Istio proxy keeps whatever proxyStatsMatcher says: `reporter=` first, the
# required prefixes after the user's, `component` and `istio` last.
ISTIO_REQUIRED_PREFIXES = ["cluster_manager", "listener_manager", "server", "cluster.xds-grpc",
                           "wasm"]
ISTIO_REQUIRED_SUFFIXES = ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied"]
ISTIO_REQUIRED_REGEXPS = [r"vhost\..*\.route\..*"]


class Server:
    """One `Gateway` resource with one HTTPS server on port 443 (credentialName shared)."""

    def __init__(self, gateway: str, namespace: str, hosts: list[str]):
        self.gateway, self.namespace, self.hosts = gateway, namespace, hosts

    @property
    def route_name(self) -> str:
        # https.<port>.<port name>.<gateway>.<namespace>
        return f"https.443.https.{self.gateway}.{self.namespace}"


# The incident: two Gateways, one wildcard certificate, one listener on the gateway pod's 8443.
SERVERS = [Server("gateway-a", "default", ["a.example.com"]),
           Server("gateway-b", "default", ["b.example.com"])]


def documents(name: str) -> list[dict]:
    """The YAML documents of istio/<name>."""
    return [d for d in yaml.safe_load_all((ISTIO_DIR / name).read_text()) if d]


# -- stats -----------------------------------------------------------------------------------------

def istio_stats_matcher(proxy_stats_matcher: dict | None = None,
                        required_prefixes: list[str] = ISTIO_REQUIRED_PREFIXES) -> dict:
    """The bootstrap `stats_matcher` Istio renders from a ProxyConfig `proxyStatsMatcher`."""
    m = proxy_stats_matcher or {}
    patterns = [{"prefix": "reporter="}]
    patterns += [{"prefix": p} for p in m.get("inclusionPrefixes", []) + required_prefixes]
    patterns += [{"suffix": s} for s in m.get("inclusionSuffixes", []) + ISTIO_REQUIRED_SUFFIXES]
    patterns += [{"safe_regex": {"regex": r}}
                 for r in m.get("inclusionRegexps", []) + ISTIO_REQUIRED_REGEXPS]
    patterns += [{"prefix": "component"}, {"prefix": "istio"}]
    return {"inclusion_list": {"patterns": patterns}}


def istio_stats_config(proxy_stats_matcher: dict | None = None, **kw) -> dict:
    return {"use_all_default_tags": False, "stats_tags": copy.deepcopy(ISTIO_STATS_TAGS),
            "stats_matcher": istio_stats_matcher(proxy_stats_matcher, **kw)}


def proto_merge(base, patch):
    """Merges like Envoy/Istio's proto MERGE: messages field by field, repeated fields appended,
    scalars replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = proto_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        return base + copy.deepcopy(patch)
    return copy.deepcopy(patch)


def apply_bootstrap_patches(bootstrap: dict, envoyfilter: dict) -> dict:
    """Applies the `applyTo: BOOTSTRAP` MERGE patches of an EnvoyFilter."""
    for p in envoyfilter["spec"]["configPatches"]:
        assert p["applyTo"] == "BOOTSTRAP" and p["patch"]["operation"] == "MERGE", p
        bootstrap = proto_merge(bootstrap, p["patch"]["value"])
    return bootstrap


# -- the gateway -----------------------------------------------------------------------------------

def istio_gateway(filters: list[dict] | None = None, *, first: bool = False,
                  servers: list[Server] = SERVERS, stats_config: dict | None = None,
                  clusters: list[dict] | None = None) -> dict:
    """The ingress gateway bootstrap. `filters` go first among the HTTP filters (`first`, phase
    AUTHN) or just before the router (EnvoyFilter INSERT_BEFORE the router)."""
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                 "DownstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [{
                "certificate_chain": {"filename": str(CERTS / "wildcard.crt")},
                "private_key": {"filename": str(CERTS / "wildcard.key")}}]}}}
    base_filters = [
        {"name": "envoy.filters.http.cors", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
        {"name": "envoy.filters.http.fault", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
    ]
    extra = copy.deepcopy(filters or [])
    http_filters = (extra + base_filters if first else base_filters + extra) + [ROUTER]

    def chain(server: Server) -> dict:
        return {
            "filter_chain_match": {"server_names": list(server.hosts)},
            "transport_socket": copy.deepcopy(tls),
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "outbound_0.0.0.0_8443",
                    "server_name": "istio-envoy",
                    "use_remote_address": True,
                    "normalize_path": True,
                    "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                                 "FileAccessLog",
                        "path": "/dev/stdout",
                        "log_format": {"text_format_source": {
                            "inline_string": ISTIO_ACCESS_LOG_FORMAT}}}}],
                    "http_filters": copy.deepcopy(http_filters),
                    "route_config": {
                        "name": server.route_name,
                        "validate_clusters": False,
                        "virtual_hosts": [{
                            "name": f"{h}:443", "domains": [h, f"{h}:*"],
                            "routes": [{"match": {"prefix": "/"}, "direct_response": {
                                "status": 200,
                                "body": {"inline_string": f"hello from {h}\n"}}}],
                        } for h in server.hosts],
                    },
                },
            }],
        }

    return {
        # Istio's node identity for a gateway pod (also required by file-based ECDS).
        "node": {"id": "router~127.0.0.1~istio-ingressgateway-0.istio-system~"
                       "istio-system.svc.cluster.local",
                 "cluster": "istio-ingressgateway.istio-system"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "stats_config": stats_config if stats_config is not None else istio_stats_config(),
        "static_resources": {
            "listeners": [{
                "name": "0.0.0.0_8443",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters."
                                              "listener.tls_inspector.v3.TlsInspector"}}],
                "filter_chains": [chain(s) for s in servers],
            }],
            "clusters": clusters or [],
        },
    }


# -- WasmPlugin / TrafficExtension -----------------------------------------------------------------

FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN",
                  "FAIL_RELOAD": "FAIL_RELOAD"}
RESOURCE_PREFIX = {"WasmPlugin": "extensions.istio.io/wasmplugin/",
                   "TrafficExtension": "extensions.istio.io/trafficextension/"}


def wasm_fields(doc: dict) -> dict:
    """The Wasm settings of a WasmPlugin (its spec) or a TrafficExtension (spec.wasm)."""
    return doc["spec"]["wasm"] if doc["kind"] == "TrafficExtension" else doc["spec"]


def resource_name(doc: dict) -> str:
    md = doc["metadata"]
    return f"{RESOURCE_PREFIX[doc['kind']]}{md['namespace']}.{md['name']}"


def extension_wasm_filter(doc: dict, wasm: Path = WASM) -> dict:
    """The Wasm HTTP filter config istiod builds for the resource, after istio-agent pulled the
    module and rewrote the code source to the file it stored."""
    f = wasm_fields(doc)
    md = doc["metadata"]
    config = {
        "name": f"{md['namespace']}.{md['name']}",
        "root_id": f.get("pluginName", ""),
        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(wasm)}}},
    }
    if f.get("pluginConfig"):
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(f["pluginConfig"], separators=(",", ":"))}
    if f.get("failStrategy"):
        config["failure_policy"] = FAILURE_POLICY[f["failStrategy"]]
    return {"@type": WASM_TYPE, "config": config}


def agent_pull_failure_filter(doc: dict) -> dict:
    """What istio-agent sends instead when it cannot pull the module: an RBAC filter that allows
    everything for FAIL_OPEN and denies everything otherwise (FAIL_CLOSE, FAIL_RELOAD, unset)."""
    if wasm_fields(doc).get("failStrategy") == "FAIL_OPEN":
        return {"@type": RBAC_TYPE, "rules_stat_prefix": "wasm-default-allow"}
    return {"@type": RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny"}


def ecds_filter(doc: dict, typed_config: dict, workdir: Path) -> dict:
    """The HTTP filter entry Istio puts in the listener (a reference to an ECDS resource) and the
    ECDS resource itself, served here from a file instead of istiod."""
    name = resource_name(doc)
    path = workdir / f"ecds-{free_port()}.yaml"
    path.write_text(yaml.safe_dump({"version_info": "1", "resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": name, "typed_config": typed_config}]}, sort_keys=False))
    return {"name": name, "config_discovery": {
        "config_source": {"path_config_source": {"path": str(path)},
                          "resource_api_version": "V3"},
        "type_urls": [WASM_TYPE, RBAC_TYPE]}}


def extension_gateway(doc: dict, workdir: Path, *, pulled: bool = True, **kw) -> dict:
    """The gateway with a WasmPlugin/TrafficExtension applied, at the position its phase gives."""
    assert doc["spec"].get("phase") == "AUTHN", "this renderer places AUTHN-phase extensions"
    typed = extension_wasm_filter(doc) if pulled else agent_pull_failure_filter(doc)
    return istio_gateway([ecds_filter(doc, typed, workdir)], first=True, **kw)


# -- EnvoyFilter -----------------------------------------------------------------------------------

def envoyfilter_http_filter(doc: dict, *, wasm: Path = WASM, remote_url: str | None = None,
                            remote_cluster: str | None = None, sha256: str | None = None
                            ) -> dict:
    """The EnvoyFilter's HTTP filter patch value, its code source pointed at this machine: a
    local module file, or a local HTTP server (URL and cluster rewritten; `sha256` replaces the
    placeholder when given)."""
    (patch,) = [p for p in doc["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    assert patch["match"]["context"] == "GATEWAY"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    hcm = patch["match"]["listener"]["filterChain"]["filter"]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    assert hcm["subFilter"]["name"] == "envoy.filters.http.router"
    value = copy.deepcopy(patch["patch"]["value"])
    code = value["typed_config"]["config"]["vm_config"]["code"]
    if "local" in code:
        code["local"]["filename"] = str(wasm)
    else:
        remote = code["remote"]
        remote["http_uri"]["uri"] = remote_url
        remote["http_uri"]["cluster"] = remote_cluster
        if sha256 is not None:
            remote["sha256"] = sha256
    return value


def static_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}
