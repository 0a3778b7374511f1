//! `--merge`: the fix that needs no filter. Istio gives every HTTPS server of a `Gateway` its own
//! filter chain and route table (`https.<port>.<port name>.<gateway>.<namespace>`), so servers
//! that present one certificate answer each other's coalesced requests with 404. One server that
//! lists all their hosts has one filter chain and one route table: every host is routed whatever
//! connection carries it, and nothing needs a 421.
//!
//! That is only possible when the servers are the same apart from their hosts: same port, same
//! TLS settings (mode, certificate, client-certificate validation, protocol versions, ciphers),
//! same `bind`. Where they differ, or the collision is between different certificates, the
//! merge is refused with the reason and the port keeps the sni-guard configuration.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::analysis::{Finding, PortReport, WorkloadReport};
use crate::generate::{dns_label, unique_name};
use crate::model::{CertRef, Server, VirtualService, Workload};

/// One merged `Gateway` replacing servers of other Gateways.
#[derive(Clone, Debug)]
pub struct Merge {
    pub workload: String,
    pub port: u32,
    pub gateway: Value,
    /// What to remove once the merged Gateway is applied: `servers[i] of Gateway ns/name`.
    pub replaces: Vec<String>,
    /// Which VirtualServices must bind to the merged Gateway.
    pub virtual_services: Vec<String>,
}

/// A workload port whose collisions cannot be merged away.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub workload: String,
    pub port: u32,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct MergePlan {
    pub merges: Vec<Merge>,
    pub refusals: Vec<Refusal>,
}

impl MergePlan {
    /// The ports of a workload that keep the sni-guard configuration.
    pub fn refused_ports(&self, workload: &Workload) -> Vec<u32> {
        let id = workload.id();
        self.refusals
            .iter()
            .filter(|r| r.workload == id)
            .map(|r| r.port)
            .collect()
    }
}

/// Plans the merges of every port with collisions. A port is merged only when all of its
/// collisions can be; otherwise it is refused as a whole, so the filter configuration that the
/// fallback installs matches the servers as they are.
pub fn plan(
    reports: &[WorkloadReport],
    virtual_services: &[VirtualService],
    istio_namespace: &str,
    taken: &mut Vec<String>,
) -> MergePlan {
    let mut out = MergePlan::default();
    for report in reports {
        for port in &report.ports {
            let collisions: Vec<&Finding> =
                port.findings.iter().filter(|f| f.is_collision()).collect();
            if collisions.is_empty() {
                continue;
            }
            let refuse = |reason: String| Refusal {
                workload: report.workload.id(),
                port: port.port,
                reason,
            };
            let selector = match &report.workload {
                Workload::Istio { selector } => selector,
                Workload::GatewayApi { .. } => {
                    out.refusals.push(refuse(
                        "Gateway API: the listeners sharing the certificate belong to one Gateway; \
                         give it one HTTPS listener without `hostname` (the HTTPRoutes carry the \
                         hostnames) instead of one listener per hostname"
                            .into(),
                    ));
                    continue;
                }
            };
            let groups: Result<Vec<Vec<&Server>>, String> =
                collisions.iter().map(|f| mergeable(f, port)).collect();
            match groups {
                Err(reason) => out.refusals.push(refuse(reason)),
                Ok(groups) => {
                    for group in groups {
                        out.merges.push(merged(
                            &report.workload,
                            selector,
                            port.port,
                            &group,
                            virtual_services,
                            istio_namespace,
                            taken,
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The servers of one collision, if one server can replace them all.
fn mergeable<'a>(finding: &Finding, port: &'a PortReport) -> Result<Vec<&'a Server>, String> {
    let labels = match finding {
        Finding::SharedCertificate { servers, .. } => servers,
        Finding::CertificateCovers { from, to, .. } => {
            return Err(format!(
                "{from} and {to} present different certificates that cover each other's \
                 hosts; one server presents one certificate, so give them one certificate first"
            ))
        }
        Finding::HostnameConflict { .. } => return Ok(Vec::new()),
    };
    let group: Vec<&Server> = port
        .servers
        .iter()
        .filter(|s| labels.contains(&s.label))
        .collect();
    let settings = |s: &Server| -> (Value, Value) {
        let raw = s.istio_server.as_ref();
        let field = |k: &str| raw.and_then(|r| r.get(k)).cloned().unwrap_or(Value::Null);
        (field("tls"), field("bind"))
    };
    if let Some(first) = group.first() {
        let (tls, bind) = settings(first);
        for other in group.iter().skip(1) {
            let (other_tls, other_bind) = settings(other);
            if other_tls != tls {
                return Err(format!(
                    "different TLS settings: {} has tls {}, {} has tls {}; one server has one \
                     set of TLS settings",
                    first.label, tls, other.label, other_tls
                ));
            }
            if other_bind != bind {
                return Err(format!(
                    "different `bind` addresses: {} ({bind}) and {} ({other_bind})",
                    first.label, other.label
                ));
            }
        }
    }
    Ok(group)
}

fn merged(
    workload: &Workload,
    selector: &BTreeMap<String, String>,
    port: u32,
    group: &[&Server],
    virtual_services: &[VirtualService],
    istio_namespace: &str,
    taken: &mut Vec<String>,
) -> Merge {
    let first = group.first().and_then(|s| s.istio_server.as_ref());
    let cert = group.first().map(|s| &s.cert);
    let cert_name = match cert {
        Some(CertRef::Secret { name, .. }) => name.clone(),
        Some(CertRef::File { .. }) => "file".into(),
        Some(CertRef::IstioMutual) => "istio-mutual".into(),
        Some(CertRef::Object { name, .. }) => name.clone(),
        None => "certificate".into(),
    };
    let name = unique_name(
        &dns_label(&format!("merged-{cert_name}-{port}")),
        istio_namespace,
        taken,
    );
    // The Gateway goes where the gateway pods run: it then binds to them also when istiod
    // scopes Gateways to their namespace (PILOT_SCOPE_GATEWAY_TO_NAMESPACE). `./host` meant the
    // old Gateway's namespace; written out, it keeps meaning that.
    let mut hosts: Vec<Value> = Vec::new();
    for server in group {
        let raw_hosts = server
            .istio_server
            .as_ref()
            .and_then(|r| r.get("hosts"))
            .and_then(Value::as_array);
        for host in raw_hosts.into_iter().flatten().filter_map(Value::as_str) {
            let host = match host.strip_prefix("./") {
                Some(h) => format!("{}/{h}", server.origin.namespace),
                None => host.to_owned(),
            };
            if !hosts.iter().any(|h| h.as_str() == Some(&host)) {
                hosts.push(Value::String(host));
            }
        }
    }
    let mut server = Map::new();
    server.insert(
        "port".into(),
        json!({"number": port, "name": format!("https-{port}"), "protocol": "HTTPS"}),
    );
    server.insert("hosts".into(), Value::Array(hosts));
    for key in ["tls", "bind", "defaultEndpoint"] {
        if let Some(v) = first.and_then(|r| r.get(key)) {
            server.insert(key.into(), v.clone());
        }
    }
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": istio_namespace},
        "spec": {"selector": selector, "servers": [Value::Object(server)]},
    });
    let old: Vec<(String, String)> = group
        .iter()
        .map(|s| (s.origin.namespace.clone(), s.origin.name.clone()))
        .collect();
    let replaces = group
        .iter()
        .map(|s| format!("{} of Gateway {}", s.origin.item, s.origin.gateway()))
        .collect();
    Merge {
        workload: workload.id(),
        port,
        gateway,
        replaces,
        virtual_services: rebind(&old, virtual_services, &format!("{istio_namespace}/{name}")),
    }
}

/// What each VirtualService bound to one of the old Gateways must add to `spec.gateways`.
fn rebind(old: &[(String, String)], all: &[VirtualService], merged: &str) -> Vec<String> {
    let bound: Vec<String> = all
        .iter()
        .filter_map(|vs| {
            let refs: Vec<&String> = vs
                .gateways
                .iter()
                .filter(|g| {
                    let (ns, name) = g.split_once('/').unwrap_or((&vs.namespace, g.as_str()));
                    old.iter()
                        .any(|(o_ns, o_name)| o_ns == ns && o_name == name)
                })
                .collect();
            (!refs.is_empty()).then(|| {
                let refs: Vec<&str> = refs.iter().map(|s| s.as_str()).collect();
                format!(
                    "VirtualService {}/{}: add `{merged}` to spec.gateways (it lists {})",
                    vs.namespace,
                    vs.name,
                    refs.join(", ")
                )
            })
        })
        .collect();
    if bound.is_empty() {
        let old: Vec<String> = old.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        vec![format!(
            "every VirtualService bound to {} must add `{merged}` to spec.gateways (give the \
             audit `kubectl get virtualservices -A -o yaml` to list them)",
            old.join(", ")
        )]
    } else {
        bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyse;
    use crate::certs::CertStore;
    use crate::model::Origin;
    use sni_guard::listeners::Pattern;

    fn server(ns: &str, gw: &str, hosts: &[&str], tls: Value) -> Server {
        Server {
            workload: Workload::Istio {
                selector: BTreeMap::from([("istio".into(), "ingress".into())]),
            },
            port: 443,
            origin: Origin {
                kind: "Gateway",
                namespace: ns.into(),
                name: gw.into(),
                item: "servers[0]".into(),
            },
            label: format!("{ns}/{gw}/https"),
            hosts: hosts
                .iter()
                .map(|h| Pattern::parse(h.rsplit('/').next().unwrap_or(h)).unwrap())
                .collect(),
            cert: CertRef::Secret {
                namespace: "istio-ingress".into(),
                name: "wildcard".into(),
            },
            istio_server: Some(json!({
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": hosts,
                "tls": tls,
            })),
        }
    }

    fn simple() -> Value {
        json!({"mode": "SIMPLE", "credentialName": "wildcard"})
    }

    #[test]
    fn shared_certificate_becomes_one_server_with_every_host() {
        let servers = [
            server("team-a", "gw-a", &["./a.example.com"], simple()),
            server(
                "team-b",
                "gw-b",
                &["b.example.com", "*/c.example.com"],
                simple(),
            ),
        ];
        let reports = analyse(&servers, &CertStore::new());
        let vs = [VirtualService {
            namespace: "team-a".into(),
            name: "a".into(),
            gateways: vec!["gw-a".into(), "mesh".into()],
        }];
        let plan = plan(&reports, &vs, "istio-ingress", &mut Vec::new());
        assert!(plan.refusals.is_empty());
        let [merge] = plan.merges.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(
            merge.gateway["spec"]["servers"],
            json!([{"port": {"number": 443, "name": "https-443", "protocol": "HTTPS"},
                    "hosts": ["team-a/a.example.com", "b.example.com", "*/c.example.com"],
                    "tls": simple()}])
        );
        assert_eq!(merge.gateway["metadata"]["name"], "merged-wildcard-443");
        assert_eq!(merge.gateway["metadata"]["namespace"], "istio-ingress");
        assert_eq!(
            merge.replaces,
            [
                "servers[0] of Gateway team-a/gw-a",
                "servers[0] of Gateway team-b/gw-b"
            ]
        );
        assert_eq!(merge.virtual_services.len(), 1);
        assert!(merge.virtual_services[0].starts_with("VirtualService team-a/a: add"));
    }

    #[test]
    fn different_tls_settings_are_refused_with_the_reason() {
        let mutual = json!({"mode": "MUTUAL", "credentialName": "wildcard"});
        let servers = [
            server("team-a", "gw-a", &["a.example.com"], simple()),
            server("team-b", "gw-b", &["b.example.com"], mutual),
        ];
        let reports = analyse(&servers, &CertStore::new());
        let plan = plan(&reports, &[], "istio-ingress", &mut Vec::new());
        assert!(plan.merges.is_empty());
        let [refusal] = plan.refusals.as_slice() else {
            panic!("{plan:?}")
        };
        assert!(
            refusal.reason.contains("different TLS settings"),
            "{refusal:?}"
        );
        assert!(refusal.reason.contains("MUTUAL"));
        assert_eq!(plan.refused_ports(&reports[0].workload), [443]);
    }
}
