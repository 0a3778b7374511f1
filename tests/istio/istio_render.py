"""What Istio would program into an ingress gateway's Envoy for the manifests under istio/.

There is no istiod, istio-agent or Kubernetes here, so this module builds the Envoy configuration
they would send, from reading Istio's source (facts, not copied code), and real Envoy runs it.
Every behaviour names the file it follows, in istio/istio at the release tags 1.26.8, 1.27.9,
1.28.10, 1.29.6 and 1.30.3 (where the releases differ, `release` selects the behaviour):

- Listener `0.0.0.0_8443` with the TLS inspector, one filter chain per `Gateway` server matched on
  SNI (ALPN h2 and http/1.1), HTTP connection manager `stat_prefix` "outbound_0.0.0.0_8443",
  `server_name` "istio-envoy", `use_remote_address` on a gateway, `normalize_path` (mesh default
  path normalization): pilot/pkg/networking/core/gateway.go, listener_builder.go, accesslog.go
  (EnvoyServerName).
- Route table names `https.443.https.<gateway>.<namespace>`: pilot/pkg/model/gateway.go
  (gatewayRDSRouteName); virtual host `<host>:443` with domains `<host>` and `<host>:*`:
  pilot/pkg/networking/core/gateway.go.
- The order of the HTTP filters: pilot/pkg/networking/core/listener_builder.go
  (buildHTTPConnectionManager): metadata exchange, CUSTOM ext_authz, AUTHN-phase extensions,
  authentication, AUTHZ-phase, authorization, STATS-phase, unphased, grpc_stats, ALPN, fault,
  cors, telemetry, router. grpc_stats/fault/cors configs: pilot/pkg/xds/filters/filters.go.
- The CUSTOM ext_authz filter (AuthorizationPolicy `action: CUSTOM`, HTTP provider):
  pilot/pkg/security/authz/builder/extauthz.go (generateHTTPConfig).
- Istio's default text access log format: pilot/pkg/model/telemetry_logging.go
  (EnvoyTextLogFormat, identical in all five releases).
- Bootstrap `stats_config`: tools/packaging/common/envoy_bootstrap.json (stats_tags, identical in
  all five releases) and pkg/bootstrap/config.go (the stats matcher: `reporter=` first, the
  ProxyConfig inclusions, then the required prefixes `cluster_manager, listener_manager, server,
  cluster.xds-grpc, wasm`, the rbac suffixes and the `vhost` regex, `component` and `istio` last).
- WasmPlugin/TrafficExtension -> an ECDS resource: pilot/pkg/model/extensions.go (resource name,
  pluginConfig as JSON in a StringValue, pluginName as root_id, failStrategy as failure_policy:
  FAIL_RELOAD from 1.27; 1.26-1.28 do this for proxies of 1.25 or later, as here, and set the
  old fail_open for older ones), pilot/pkg/networking/core/extension/extensionfilter.go (the listener
  references it by name with the Wasm and RBAC type URLs). From 1.30 istiod translates each
  WasmPlugin into a TrafficExtension named `<name>~istio-translated-wasmplugin`:
  pilot/pkg/config/kube/extensions/translate.go.
- istio-agent: pkg/wasm/convert.go (the `oci://` code source becomes the local file it pulled,
  its internal environment variables are stripped; when the pull fails, an RBAC filter that allows
  everything for FAIL_OPEN and denies everything otherwise, with `rules_stat_prefix` from 1.28).
- EnvoyFilter `INSERT_FIRST` on HTTP_FILTER: pilot/pkg/networking/core/envoyfilter/listener_patch.go
  (patchHTTPFilters: prepended to the HTTP filters of every matching connection manager;
  filterChainMatch: a `filterChain.sni` matches a chain whose `server_names` contain it exactly,
  never a chain without server names; patches applied in their order).

Left out, because upstream Envoy cannot run them or this test has no use for them (leaving them
out changes no behaviour tested here): the Istio-proxy-only filters `istio.metadata_exchange`,
`istio.alpn` and `istio.stats`; the RBAC shadow-rules filter Istio puts before a CUSTOM ext_authz
filter to enable it only for requests the policy matches (the policy here matches every request);
node metadata, tracing, xDS clusters. Substituted: the listener binds 127.0.0.1 on a free port
(its name stays `0.0.0.0_8443`), routes are inline instead of served by RDS and
answer with a direct response instead of forwarding to a backend; the ECDS resource is read from
a file instead of istiod; the Wasm module is the local build instead of an image pull.
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
RELEASES = ["1.26", "1.27", "1.28", "1.29", "1.30"]


def since(release: str, first: str) -> bool:
    return RELEASES.index(release) >= RELEASES.index(first)


def http_filter(name: str, type_url: str, **config) -> dict:
    return {"name": name, "typed_config": {"@type": f"type.googleapis.com/{type_url}", **config}}


# pilot/pkg/xds/filters/filters.go
GRPC_STATS = http_filter("envoy.filters.http.grpc_stats",
                         "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                         emit_filter_state=True, stats_for_all_methods=False)
FAULT = http_filter("envoy.filters.http.fault",
                    "envoy.extensions.filters.http.fault.v3.HTTPFault")
CORS = http_filter("envoy.filters.http.cors", "envoy.extensions.filters.http.cors.v3.Cors")
ROUTER = http_filter("envoy.filters.http.router", "envoy.extensions.filters.http.router.v3.Router")

# pilot/pkg/model/telemetry_logging.go, EnvoyTextLogFormat.
ISTIO_ACCESS_LOG_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n")

# tools/packaging/common/envoy_bootstrap.json, stats_tags (without a mesh's extraStatTags).
ISTIO_STATS_TAGS = [
    {"tag_name": "cluster_name", "regex": r"^cluster(\.(.+);)"},
    {"tag_name": "http_conn_manager_prefix",
     "regex": r"^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)"},
    {"tag_name": "thread_name", "regex": r"^server(\.(.+))\.watchdog"},
    {"tag_name": "tcp_prefix", "regex": r"^tcp\.((.*?)\.)\w+?$"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
    {"tag_name": "http_conn_manager_listener_prefix",
     "regex": r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
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

# pkg/bootstrap/config.go: kept whatever a ProxyConfig `proxyStatsMatcher` says (a gateway pod
# does not set ExitOnZeroActiveConnections, so the suffixes are the rbac ones only).
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


def istio_stats_config(proxy_stats_matcher: dict | None = None) -> dict:
    """The bootstrap `stats_config` Istio renders, for a ProxyConfig `proxyStatsMatcher`."""
    m = proxy_stats_matcher or {}
    patterns = [{"prefix": "reporter="}]
    patterns += [{"prefix": p} for p in m.get("inclusionPrefixes", []) + ISTIO_REQUIRED_PREFIXES]
    patterns += [{"suffix": s} for s in m.get("inclusionSuffixes", []) + ISTIO_REQUIRED_SUFFIXES]
    patterns += [{"safe_regex": {"regex": r}}
                 for r in m.get("inclusionRegexps", []) + ISTIO_REQUIRED_REGEXPS]
    patterns += [{"prefix": "component"}, {"prefix": "istio"}]
    return {"use_all_default_tags": False, "stats_tags": copy.deepcopy(ISTIO_STATS_TAGS),
            "stats_matcher": {"inclusion_list": {"patterns": patterns}}}


# -- the gateway -----------------------------------------------------------------------------------

def istio_http_filters(*, custom_authz: list[dict] = (), authn_phase: list[dict] = ()) -> list:
    """The HTTP filters of a gateway connection manager in listener_builder.go's order (the
    Istio-proxy-only filters left out, no authentication or ALLOW/DENY policies)."""
    return [*copy.deepcopy(custom_authz), *copy.deepcopy(authn_phase), GRPC_STATS, FAULT, CORS,
            ROUTER]


def custom_ext_authz(cluster: str) -> dict:
    """The ext_authz filter of an AuthorizationPolicy `action: CUSTOM` with an HTTP provider at
    `cluster` (defaults of extauthz.go: 600s timeout, fail closed, 403 on error)."""
    return http_filter(
        "envoy.filters.http.ext_authz", "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        transport_api_version="V3",
        http_service={"server_uri": {"uri": "http://ext-authz.example", "cluster": cluster,
                                     "timeout": "600s"}})


def istio_gateway(http_filters: list[dict] | None = None, *, servers: list[Server] = SERVERS,
                  stats_config: dict | None = None, clusters: list[dict] | None = None) -> dict:
    """The ingress gateway bootstrap, its connection managers carrying `http_filters` (by default
    Istio's own, with no extension)."""
    http_filters = istio_http_filters() if http_filters is None else http_filters
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                 "DownstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [{
                "certificate_chain": {"filename": str(CERTS / "wildcard.crt")},
                "private_key": {"filename": str(CERTS / "wildcard.key")}}]}}}

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
        "node": {"id": "router~127.0.0.1~istio-ingress-0.istio-ingress~"
                       "istio-ingress.svc.cluster.local",
                 "cluster": "istio-ingress.istio-ingress"},
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

def failure_policy(fail_strategy: str | None, release: str) -> str | None:
    """extensions.go: Istio's failStrategy as Envoy's failure_policy (FAIL_RELOAD from 1.27;
    1.26 leaves it unset, though its WasmPlugin schema refuses the value anyway)."""
    mapping = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED"}
    if since(release, "1.27"):
        mapping["FAIL_RELOAD"] = "FAIL_RELOAD"
    return mapping.get(fail_strategy or "")


def wasm_fields(doc: dict) -> dict:
    """The Wasm settings of a WasmPlugin (its spec) or a TrafficExtension (spec.wasm)."""
    return doc["spec"]["wasm"] if doc["kind"] == "TrafficExtension" else doc["spec"]


def plugin_name(doc: dict, release: str) -> str:
    """`<namespace>.<name>` of the extension istiod builds (the Wasm config's `name`)."""
    md = doc["metadata"]
    if doc["kind"] == "WasmPlugin" and since(release, "1.30"):
        return f"{md['namespace']}.{md['name']}~istio-translated-wasmplugin"
    return f"{md['namespace']}.{md['name']}"


def resource_name(doc: dict, release: str) -> str:
    """The ECDS resource name, which is also the HTTP filter's name in the listener."""
    kind = "wasmplugin" if doc["kind"] == "WasmPlugin" and not since(release, "1.30") \
        else "trafficextension"
    return f"extensions.istio.io/{kind}/{plugin_name(doc, release)}"


def extension_wasm_filter(doc: dict, release: str, wasm: Path = WASM) -> dict:
    """The Wasm HTTP filter config istiod builds for the resource, after istio-agent pulled the
    module and rewrote the code source to the file it stored."""
    f = wasm_fields(doc)
    config = {
        "name": plugin_name(doc, release),
        "root_id": f.get("pluginName", ""),
        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(wasm)}}},
    }
    if f.get("pluginConfig"):
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(f["pluginConfig"], separators=(",", ":"))}
    policy = failure_policy(f.get("failStrategy"), release)
    if policy:
        config["failure_policy"] = policy
    return {"@type": WASM_TYPE, "config": config}


def agent_pull_failure_filter(doc: dict, release: str) -> dict:
    """What istio-agent sends instead when it cannot pull the module: an RBAC filter that allows
    everything for FAIL_OPEN and denies everything otherwise (FAIL_CLOSE, FAIL_RELOAD, unset)."""
    fail_open = wasm_fields(doc).get("failStrategy") == "FAIL_OPEN"
    rbac = {"@type": RBAC_TYPE}
    if not fail_open:
        rbac["rules"] = {}
    if since(release, "1.28"):
        rbac["rules_stat_prefix"] = "wasm-default-allow" if fail_open else "wasm-default-deny"
    return rbac


def ecds_filter(doc: dict, typed_config: dict, workdir: Path, release: str) -> dict:
    """The HTTP filter entry Istio puts in the listener (a reference to an ECDS resource) and the
    ECDS resource itself, served here from a file instead of istiod."""
    name = resource_name(doc, release)
    path = workdir / f"ecds-{free_port()}.yaml"
    path.write_text(yaml.safe_dump({"version_info": "1", "resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": name, "typed_config": typed_config}]}, sort_keys=False))
    return {"name": name, "config_discovery": {
        "config_source": {"path_config_source": {"path": str(path)},
                          "resource_api_version": "V3"},
        "type_urls": [WASM_TYPE, RBAC_TYPE]}}


def extension_gateway(doc: dict, workdir: Path, *, release: str = "1.30", pulled: bool = True,
                      custom_authz: list[dict] = (), **kw) -> dict:
    """The gateway with a WasmPlugin/TrafficExtension applied in phase AUTHN."""
    assert doc["spec"].get("phase") == "AUTHN", "this renderer places AUTHN-phase extensions"
    typed = extension_wasm_filter(doc, release) if pulled else agent_pull_failure_filter(doc,
                                                                                         release)
    filters = istio_http_filters(custom_authz=custom_authz,
                                 authn_phase=[ecds_filter(doc, typed, workdir, release)])
    return istio_gateway(filters, **kw)


# -- EnvoyFilter -----------------------------------------------------------------------------------

def envoyfilter_patch(doc: dict) -> dict:
    """The EnvoyFilter's one HTTP_FILTER patch on the gateway's connection managers."""
    (patch,) = doc["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["match"]["context"] == "GATEWAY", patch
    assert patch["match"]["listener"]["filterChain"]["filter"] == {
        "name": "envoy.filters.network.http_connection_manager"}, patch
    return patch


def apply_envoyfilter(http_filters: list[dict], doc: dict, *, wasm: Path = WASM,
                      remote_url: str | None = None, remote_cluster: str | None = None,
                      sha256: str | None = None) -> list[dict]:
    """listener_patch.go: the connection manager's HTTP filters after the EnvoyFilter, its code
    source pointed at this machine: a local module file, or a local HTTP server (URL and cluster
    rewritten; `sha256` replaces the placeholder when given)."""
    patch = envoyfilter_patch(doc)
    assert patch["patch"]["operation"] == "INSERT_FIRST", patch
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
    return [value, *copy.deepcopy(http_filters)]


def apply_envoyfilter_per_chain(bootstrap: dict, doc: dict, *, wasm: Path = WASM) -> dict:
    """listener_patch.go for an EnvoyFilter whose HTTP_FILTER patches match filter chains by
    `filterChain.sni`: each chain's connection manager gets the patches that match it, in
    order, each inserted first. The code source must be a local file (pointed at `wasm`)."""
    bootstrap = copy.deepcopy(bootstrap)
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            names = chain.get("filter_chain_match", {}).get("server_names", [])
            hcm = chain["filters"][0]["typed_config"]
            for patch in doc["spec"]["configPatches"]:
                assert patch["applyTo"] == "HTTP_FILTER", patch
                assert patch["patch"]["operation"] == "INSERT_FIRST", patch
                sni = patch["match"]["listener"]["filterChain"].get("sni", "")
                if sni and sni not in names:
                    continue
                value = copy.deepcopy(patch["patch"]["value"])
                value["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(
                    wasm)
                hcm["http_filters"] = [value, *hcm["http_filters"]]
    return bootstrap


def static_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}
