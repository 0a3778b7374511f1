//! Reading `kubectl get ... -o json|yaml` output into the [`Inventory`].
//!
//! A source holds one JSON value, several concatenated JSON values, or a YAML stream of
//! documents; each object is a Gateway, a `List` (or `GatewayList`) whose `items` are read in
//! turn, or some other kind, which is counted and skipped. Errors name the source, the document
//! and the JSON path of the field, because a dump of a whole cluster is long.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use sni_guard::listeners::Pattern;

use crate::model::{CertRef, Excluded, Inventory, Origin, Server, VirtualService, Workload};

const ISTIO_KIND: &str = "Gateway";
const GATEWAY_API_KIND: &str = "Gateway.gateway.networking.k8s.io";

/// A document that cannot be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// `gw.yaml: document 2 (Gateway default/a)`.
    pub location: String,
    /// JSON path of the field, when the problem is one field.
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: field `{field}`: {}", self.location, self.reason),
            None => write!(f, "{}: {}", self.location, self.reason),
        }
    }
}

impl std::error::Error for InputError {}

/// Options that change how references are resolved.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Namespace of the Istio gateway deployments. Istio looks a bare `credentialName` up in
    /// the namespace of the gateway *workload*, not of the Gateway resource, so two Gateways in
    /// two application namespaces naming `wildcard-cert` share the one Secret next to the pods.
    pub istio_namespace: String,
}

/// Reads every object of one source (`name` is used in messages only).
pub fn read_source(
    name: &str,
    text: &str,
    options: &ReadOptions,
    inventory: &mut Inventory,
) -> Result<(), InputError> {
    for (index, doc) in split_documents(name, text)?.into_iter().enumerate() {
        let location = format!("{name}: document {}", index + 1);
        read_object(&location, doc, options, inventory)?;
    }
    Ok(())
}

/// Splits a source into its documents: JSON when it starts with `{` or `[`, YAML otherwise.
/// Empty YAML documents (a trailing `---`) are dropped.
fn split_documents(name: &str, text: &str) -> Result<Vec<Value>, InputError> {
    let at = |reason: String| InputError {
        location: name.to_owned(),
        field: None,
        reason,
    };
    let first = text.trim_start().chars().next();
    if matches!(first, Some('{') | Some('[')) {
        let mut docs = Vec::new();
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            match value.map_err(|e| at(format!("invalid JSON: {e}")))? {
                // A top-level array is read as a list of objects.
                Value::Array(items) => docs.extend(items),
                other => docs.push(other),
            }
        }
        return Ok(docs);
    }
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| at(format!("document {}: invalid YAML: {e}", i + 1)))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn read_object(
    location: &str,
    value: Value,
    options: &ReadOptions,
    inventory: &mut Inventory,
) -> Result<(), InputError> {
    let error = |field: Option<&str>, reason: &str| InputError {
        location: location.to_owned(),
        field: field.map(str::to_owned),
        reason: reason.to_owned(),
    };
    let Value::Object(map) = &value else {
        return Err(error(None, "expected a Kubernetes object (a mapping)"));
    };
    let kind = match map.get("kind") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => return Err(error(Some("kind"), "expected a string")),
        None => return Err(error(Some("kind"), "missing: not a Kubernetes object")),
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(v)) => v.clone(),
        Some(_) => return Err(error(Some("apiVersion"), "expected a string")),
        None => String::new(),
    };
    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        let items = match map.get("items") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(error(Some("items"), "expected a list")),
        };
        for (i, item) in items.into_iter().enumerate() {
            read_object(&format!("{location}, items[{i}]"), item, options, inventory)?;
        }
        return Ok(());
    }
    let group = api_version.split('/').next().unwrap_or_default();
    if kind == "VirtualService" && group == "networking.istio.io" {
        let vs: IstioVirtualService = typed(location, "VirtualService", value)?;
        inventory.ignored += 1;
        inventory.virtual_services.push(VirtualService {
            namespace: vs.metadata.namespace(),
            name: vs.metadata.name,
            gateways: vs.spec.gateways,
        });
        return Ok(());
    }
    if kind != "Gateway" {
        inventory.ignored += 1;
        return Ok(());
    }
    match group {
        "networking.istio.io" => {
            // The servers as written, for `--merge`; the typed form below checks them.
            let raw_servers = value
                .pointer("/spec/servers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let gw: IstioGateway = typed(location, "Gateway", value)?;
            inventory.istio_gateways += 1;
            istio_servers(gw, &raw_servers, options, inventory);
        }
        "gateway.networking.k8s.io" => {
            let gw: ApiGateway = typed(location, "Gateway", value)?;
            inventory.gateway_api_gateways += 1;
            api_listeners(gw, inventory);
        }
        _ => inventory.ignored += 1,
    }
    Ok(())
}

/// Deserialises a known kind, naming the object and the failing field on error.
fn typed<T: DeserializeOwned>(location: &str, kind: &str, value: Value) -> Result<T, InputError> {
    let name = object_name(&value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        InputError {
            location: format!("{location} ({kind} {name})"),
            field: Some(field),
            reason: e.into_inner().to_string(),
        }
    })
}

fn object_name(value: &Value) -> String {
    let meta = value.get("metadata");
    let text = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    format!(
        "{}/{}",
        text("namespace").unwrap_or("default"),
        text("name").unwrap_or("?")
    )
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

impl Metadata {
    fn namespace(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| "default".into())
    }
}

#[derive(Debug, Deserialize)]
struct IstioVirtualService {
    metadata: Metadata,
    #[serde(default)]
    spec: IstioVirtualServiceSpec,
}

#[derive(Debug, Default, Deserialize)]
struct IstioVirtualServiceSpec {
    #[serde(default)]
    gateways: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct IstioGateway {
    metadata: Metadata,
    #[serde(default)]
    spec: IstioSpec,
}

#[derive(Debug, Default, Deserialize)]
struct IstioSpec {
    #[serde(default)]
    selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    servers: Option<Vec<IstioServer>>,
}

#[derive(Debug, Deserialize)]
struct IstioServer {
    port: IstioPort,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    tls: Option<IstioTls>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IstioPort {
    number: u32,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IstioTls {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    credential_name: Option<String>,
    #[serde(default)]
    server_certificate: Option<String>,
}

fn istio_servers(
    gw: IstioGateway,
    raw_servers: &[Value],
    options: &ReadOptions,
    inventory: &mut Inventory,
) {
    let namespace = gw.metadata.namespace();
    let name = gw.metadata.name.clone();
    let workload = Workload::Istio {
        selector: gw.spec.selector.unwrap_or_default(),
    };
    for (i, server) in gw.spec.servers.unwrap_or_default().into_iter().enumerate() {
        let origin = Origin {
            kind: ISTIO_KIND,
            namespace: namespace.clone(),
            name: name.clone(),
            item: format!("servers[{i}]"),
        };
        let exclude = |inventory: &mut Inventory, reason: String| {
            inventory.excluded.push(Excluded {
                origin: origin.clone(),
                host: None,
                reason,
            });
        };
        let mode = server
            .tls
            .as_ref()
            .and_then(|t| t.mode.as_deref())
            .unwrap_or("SIMPLE")
            .to_ascii_uppercase();
        if mode == "PASSTHROUGH" || mode == "AUTO_PASSTHROUGH" {
            exclude(
                inventory,
                format!("TLS mode {mode}: the gateway does not terminate TLS, no HTTP"),
            );
            continue;
        }
        if !server.port.protocol.eq_ignore_ascii_case("HTTPS") {
            exclude(
                inventory,
                format!(
                    "port {} protocol `{}` is not HTTPS (no TLS-terminated HTTP)",
                    server.port.number, server.port.protocol
                ),
            );
            continue;
        }
        let Some(tls) = server.tls else {
            exclude(inventory, "HTTPS server without `tls` settings".into());
            continue;
        };
        let cert = match mode.as_str() {
            "ISTIO_MUTUAL" => Some(CertRef::IstioMutual),
            _ => istio_cert(&tls, options),
        };
        let Some(cert) = cert else {
            exclude(
                inventory,
                "no `credentialName` or `serverCertificate`: certificate unknown".into(),
            );
            continue;
        };
        let mut hosts = Vec::new();
        for raw in &server.hosts {
            // `namespace/host` limits which VirtualServices may bind; only the host matters here.
            let host = raw.split_once('/').map_or(raw.as_str(), |(_, h)| h);
            push_host(host, &origin, &mut hosts, inventory);
        }
        if hosts.is_empty() {
            exclude(inventory, "no usable hosts".into());
            continue;
        }
        let item = server
            .name
            .or(server.port.name)
            .unwrap_or_else(|| i.to_string());
        inventory.servers.push(Server {
            workload: workload.clone(),
            port: server.port.number,
            label: format!("{namespace}/{name}/{item}"),
            origin,
            hosts,
            cert,
            istio_server: raw_servers.get(i).cloned(),
        });
    }
}

/// The certificate of a terminating Istio server: `credentialName` wins over mounted files, as
/// in Istio.
fn istio_cert(tls: &IstioTls, options: &ReadOptions) -> Option<CertRef> {
    if let Some(credential) = tls.credential_name.as_deref().filter(|c| !c.is_empty()) {
        let credential = credential
            .strip_prefix("kubernetes-gateway://")
            .or_else(|| credential.strip_prefix("kubernetes://"))
            .unwrap_or(credential);
        let (namespace, name) = match credential.split_once('/') {
            Some((ns, name)) => (ns.to_owned(), name.to_owned()),
            None => (options.istio_namespace.clone(), credential.to_owned()),
        };
        return Some(CertRef::Secret { namespace, name });
    }
    tls.server_certificate
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|path| CertRef::File { path: path.into() })
}

/// Normalises one host with the filter's own rules; a host the filter would refuse is reported
/// and left out rather than failing the whole audit.
fn push_host(raw: &str, origin: &Origin, hosts: &mut Vec<Pattern>, inventory: &mut Inventory) {
    match Pattern::parse(raw) {
        Ok(pattern) => {
            if !hosts.contains(&pattern) {
                hosts.push(pattern);
            }
        }
        Err(e) => inventory.excluded.push(Excluded {
            origin: origin.clone(),
            host: Some(raw.to_owned()),
            reason: format!("not a hostname sni-guard accepts: {e}"),
        }),
    }
}

#[derive(Debug, Deserialize)]
struct ApiGateway {
    metadata: Metadata,
    spec: ApiSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiSpec {
    gateway_class_name: String,
    #[serde(default)]
    listeners: Vec<ApiListener>,
}

#[derive(Debug, Deserialize)]
struct ApiListener {
    name: String,
    #[serde(default)]
    hostname: Option<String>,
    port: u32,
    protocol: String,
    #[serde(default)]
    tls: Option<ApiTls>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiTls {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    certificate_refs: Vec<ApiRef>,
}

#[derive(Debug, Deserialize)]
struct ApiRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

fn api_listeners(gw: ApiGateway, inventory: &mut Inventory) {
    let namespace = gw.metadata.namespace();
    let name = gw.metadata.name.clone();
    let workload = Workload::GatewayApi {
        namespace: namespace.clone(),
        name: name.clone(),
        class: gw.spec.gateway_class_name,
    };
    for listener in gw.spec.listeners {
        let origin = Origin {
            kind: GATEWAY_API_KIND,
            namespace: namespace.clone(),
            name: name.clone(),
            item: format!("listeners[{}]", listener.name),
        };
        let exclude = |inventory: &mut Inventory, reason: String| {
            inventory.excluded.push(Excluded {
                origin: origin.clone(),
                host: None,
                reason,
            });
        };
        let mode = listener
            .tls
            .as_ref()
            .and_then(|t| t.mode.clone())
            .unwrap_or_else(|| "Terminate".into());
        let passthrough = mode == "Passthrough";
        let reason = match (listener.protocol.as_str(), passthrough) {
            ("HTTPS", false) => None,
            ("HTTPS" | "TLS", true) => {
                Some("TLS passthrough: the gateway does not terminate TLS, no HTTP".to_owned())
            }
            ("TLS", false) => Some("protocol TLS (terminated) carries TCP routes, not HTTP".into()),
            (other, _) => Some(format!(
                "port {} protocol `{other}` is not HTTPS (no TLS-terminated HTTP)",
                listener.port
            )),
        };
        if let Some(reason) = reason {
            exclude(inventory, reason);
            continue;
        }
        let cert = listener
            .tls
            .as_ref()
            .and_then(|t| t.certificate_refs.first())
            .map(|r| api_cert(r, &namespace));
        let Some(cert) = cert else {
            exclude(
                inventory,
                "HTTPS listener without `tls.certificateRefs`".into(),
            );
            continue;
        };
        let mut hosts = Vec::new();
        match listener.hostname.as_deref() {
            // No hostname: the listener takes every name.
            None | Some("") => hosts.push(Pattern::CatchAll),
            Some(h) => push_host(h, &origin, &mut hosts, inventory),
        }
        if hosts.is_empty() {
            exclude(inventory, "no usable hostname".into());
            continue;
        }
        inventory.servers.push(Server {
            workload: workload.clone(),
            port: listener.port,
            label: format!("{namespace}/{name}/{}", listener.name),
            origin,
            hosts,
            cert,
            istio_server: None,
        });
    }
}

/// A certificate reference, with the Gateway's namespace when none is given. Only the first
/// reference counts: further ones are alternative key types of the same names.
fn api_cert(r: &ApiRef, gateway_namespace: &str) -> CertRef {
    let namespace = r
        .namespace
        .clone()
        .unwrap_or_else(|| gateway_namespace.to_owned());
    let group = r.group.clone().unwrap_or_default();
    let kind = r.kind.clone().unwrap_or_else(|| "Secret".into());
    if group.is_empty() && kind == "Secret" {
        CertRef::Secret {
            namespace,
            name: r.name.clone(),
        }
    } else {
        CertRef::Object {
            group,
            kind,
            namespace,
            name: r.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ReadOptions {
        ReadOptions {
            istio_namespace: "istio-system".into(),
        }
    }

    fn read(text: &str) -> Result<Inventory, InputError> {
        let mut inv = Inventory::default();
        read_source("t.yaml", text, &options(), &mut inv)?;
        Ok(inv)
    }

    #[test]
    fn istio_hosts_lose_their_namespace_and_passthrough_is_excluded() {
        let inv = read(
            r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: apps}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*/A.example.com", "./b.example.com", "apps/*.w.example.com", "c.example.com."]
    tls: {mode: SIMPLE, credentialName: wildcard}
  - port: {number: 443, name: pass, protocol: TLS}
    hosts: [p.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"#,
        )
        .unwrap();
        assert_eq!(inv.servers.len(), 1);
        let s = &inv.servers[0];
        let hosts: Vec<String> = s.hosts.iter().map(|h| h.to_string()).collect();
        assert_eq!(
            hosts,
            [
                "a.example.com",
                "b.example.com",
                "*.w.example.com",
                "c.example.com"
            ]
        );
        assert_eq!(
            s.cert,
            CertRef::Secret {
                namespace: "istio-system".into(),
                name: "wildcard".into()
            }
        );
        assert_eq!(s.label, "apps/gw/https");
        assert_eq!(inv.excluded.len(), 2);
    }

    #[test]
    fn istio_credential_forms() {
        let tls = |c: &str| IstioTls {
            mode: None,
            credential_name: Some(c.into()),
            server_certificate: Some("/etc/c.pem".into()),
        };
        let secret = |ns: &str, n: &str| {
            Some(CertRef::Secret {
                namespace: ns.into(),
                name: n.into(),
            })
        };
        assert_eq!(
            istio_cert(&tls("x"), &options()),
            secret("istio-system", "x")
        );
        assert_eq!(istio_cert(&tls("ns/x"), &options()), secret("ns", "x"));
        assert_eq!(
            istio_cert(&tls("kubernetes-gateway://ns/x"), &options()),
            secret("ns", "x")
        );
        assert_eq!(
            istio_cert(&tls(""), &options()),
            Some(CertRef::File {
                path: "/etc/c.pem".into()
            })
        );
    }

    #[test]
    fn gateway_api_listeners() {
        let inv = read(
            r#"{"apiVersion": "v1", "kind": "List", "items": [
              {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"gatewayClassName": "istio", "listeners": [
                 {"name": "a", "port": 443, "protocol": "HTTPS", "hostname": "a.example.com",
                  "tls": {"certificateRefs": [{"name": "cert"}]}},
                 {"name": "any", "port": 443, "protocol": "HTTPS",
                  "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert", "namespace": "certs", "kind": "Secret"}]}},
                 {"name": "pass", "port": 443, "protocol": "TLS", "hostname": "p.example.com",
                  "tls": {"mode": "Passthrough"}},
                 {"name": "http", "port": 80, "protocol": "HTTP"}
               ]}}]}"#,
        )
        .unwrap();
        assert_eq!(inv.gateway_api_gateways, 1);
        assert_eq!(inv.servers.len(), 2);
        assert_eq!(inv.servers[1].hosts, [Pattern::CatchAll]);
        assert_eq!(
            inv.servers[1].cert,
            CertRef::Secret {
                namespace: "certs".into(),
                name: "cert".into()
            }
        );
        assert_eq!(
            inv.servers[0].cert,
            CertRef::Secret {
                namespace: "shop".into(),
                name: "cert".into()
            }
        );
        assert_eq!(inv.excluded.len(), 2);
    }

    #[test]
    fn errors_name_document_object_and_field() {
        let e = read(
            "kind: ConfigMap\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\n\
             metadata: {name: gw, namespace: apps}\nspec:\n  servers:\n  - port: {number: https}\n",
        )
        .unwrap_err();
        assert_eq!(e.location, "t.yaml: document 2 (Gateway apps/gw)");
        assert_eq!(e.field.as_deref(), Some("spec.servers[0].port.number"));
        let e = read("- a\n").unwrap_err();
        assert!(e.reason.contains("Kubernetes object"), "{e}");
        let e = read("{\"kind\": 1}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("kind"));
        let e = read("a: [").unwrap_err();
        assert!(e.reason.contains("invalid YAML"), "{e}");
        let e = read("{\"kind\": \"Gateway\",").unwrap_err();
        assert!(e.reason.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn other_kinds_and_empty_documents_are_skipped() {
        let inv =
            read("---\nkind: Secret\n---\n---\napiVersion: v1\nkind: ConfigMapList\nitems: []\n")
                .unwrap();
        assert_eq!(inv.ignored, 1);
        assert!(inv.servers.is_empty());
    }
}
