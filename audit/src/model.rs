//! What the audit reasons about, independent of the input format: gateway workloads, the
//! TLS-terminating HTTP servers on their ports, and the certificate each one presents.
//!
//! Istio `Gateway` servers and Gateway API listeners both become a [`Server`]; everything the
//! filter cannot act on (plain HTTP, TLS passthrough, TCP) becomes an [`Excluded`] entry so the
//! report can say why it was left out.

use std::collections::BTreeMap;
use std::fmt;

use sni_guard::listeners::Pattern;

/// The proxy deployment that serves a set of servers. Servers of different workloads never share
/// a connection: they are different pods behind different addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// Istio `Gateway` resources bind to every gateway pod whose labels match `spec.selector`,
    /// in any namespace (Istio's default). Two Gateways with the same selector configure the
    /// same Envoy.
    Istio { selector: BTreeMap<String, String> },
    /// A Gateway API `Gateway` gets its own deployment in Istio, Envoy Gateway (default mode)
    /// and most other implementations, so the Gateway itself is the workload.
    GatewayApi {
        namespace: String,
        name: String,
        class: String,
    },
}

impl Workload {
    /// Stable identifier used in reports: `istio:app=x,istio=ingressgateway` or
    /// `gateway-api:ns/name`.
    pub fn id(&self) -> String {
        match self {
            Workload::Istio { selector } => {
                let labels: Vec<String> =
                    selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("istio:{}", labels.join(","))
            }
            Workload::GatewayApi {
                namespace, name, ..
            } => format!("gateway-api:{namespace}/{name}"),
        }
    }
}

/// The certificate a server presents, as far as the configuration tells. Two servers with equal
/// `CertRef`s present the same certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertRef {
    /// A Kubernetes Secret (Istio `credentialName`, Gateway API `certificateRefs` of kind
    /// Secret).
    Secret { namespace: String, name: String },
    /// A Gateway API certificate reference of another kind.
    Object {
        group: String,
        kind: String,
        namespace: String,
        name: String,
    },
    /// A certificate file mounted into the gateway pod (Istio `serverCertificate`).
    File { path: String },
    /// Istio `ISTIO_MUTUAL`: the workload's own mesh certificate.
    IstioMutual,
}

impl fmt::Display for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRef::Secret { namespace, name } => write!(f, "secret {namespace}/{name}"),
            CertRef::Object {
                group,
                kind,
                namespace,
                name,
            } => {
                let group = if group.is_empty() { "core" } else { group };
                write!(f, "{kind}.{group} {namespace}/{name}")
            }
            CertRef::File { path } => write!(f, "file {path}"),
            CertRef::IstioMutual => f.write_str("istio-mutual"),
        }
    }
}

/// Where a server or an exclusion came from, for people to find it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `Gateway` (Istio) or `Gateway.gateway.networking.k8s.io`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// `servers[0]` or `listeners[https]`.
    pub item: String,
}

impl Origin {
    /// `namespace/name`.
    pub fn gateway(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} {}",
            self.kind, self.namespace, self.name, self.item
        )
    }
}

/// One TLS-terminating HTTP server: an Istio Gateway server or a Gateway API listener.
#[derive(Clone, Debug)]
pub struct Server {
    pub workload: Workload,
    pub port: u32,
    pub origin: Origin,
    /// Proposed listener name in the generated configuration; made unique per port later.
    pub label: String,
    /// Normalised, deduplicated host patterns, in input order.
    pub hosts: Vec<Pattern>,
    pub cert: CertRef,
    /// The Istio `Gateway` server as written (`port`, `hosts`, `tls`, ...), which `--merge`
    /// copies the TLS settings from; `None` for a Gateway API listener.
    pub istio_server: Option<serde_json::Value>,
}

/// An Istio `VirtualService`, as far as `--merge` needs it: the Gateways it binds to.
#[derive(Clone, Debug)]
pub struct VirtualService {
    pub namespace: String,
    pub name: String,
    /// `spec.gateways` as written: `name` (the VirtualService's namespace), `namespace/name` or
    /// `mesh`.
    pub gateways: Vec<String>,
}

/// A server, listener or host left out of the analysis, and why.
#[derive(Clone, Debug)]
pub struct Excluded {
    pub origin: Origin,
    /// The host concerned, when only one host was left out.
    pub host: Option<String>,
    pub reason: String,
}

/// Everything read from the inputs.
#[derive(Debug, Default)]
pub struct Inventory {
    pub servers: Vec<Server>,
    pub excluded: Vec<Excluded>,
    /// Number of Istio and Gateway API Gateway objects read.
    pub istio_gateways: usize,
    pub gateway_api_gateways: usize,
    /// Objects of other kinds, skipped (VirtualServices included: only `--merge` reads them).
    pub ignored: usize,
    pub virtual_services: Vec<VirtualService>,
}
