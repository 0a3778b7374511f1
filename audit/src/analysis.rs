//! Which servers of one gateway port can be reached over one coalesced connection, and how the
//! filter's listener groups are drawn for that port.
//!
//! A browser that opened a connection for a host of server A reuses it for a host of server B
//! when the certificate A presents covers B's host and the address is the same (RFC 7540
//! §9.1.1, RFC 9113 §9.1.1). Same workload and port means same address, so the questions are:
//! do A and B present the same certificate (Istio's own check, IST0138), and does A's
//! certificate name B's hosts (only answerable with the certificate's SANs).

use std::collections::{BTreeSet, HashMap};

use sni_guard::listeners::Pattern;

use crate::certs::CertStore;
use crate::model::{CertRef, Server, Workload};

/// Istio's analyzer message for two Gateways that select one workload and use one certificate
/// (`GatewayDuplicateCertificate`).
pub const ISTIO_DUPLICATE_CERT: &str = "IST0138";

/// Something the operator has to know about one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Several servers present the same certificate: each one's connections can carry the
    /// others' hosts.
    SharedCertificate {
        cert: CertRef,
        /// Listener names of the servers.
        servers: Vec<String>,
        /// `namespace/name` of the Gateway resources involved.
        gateways: Vec<String>,
        hosts: Vec<String>,
        /// `IST0138` when `istioctl analyze` reports the same thing (two Istio Gateways).
        istio_code: Option<&'static str>,
    },
    /// The certificate of `from` (read from its SANs) covers hosts of `to`, although the two
    /// are configured with different certificates.
    CertificateCovers {
        cert: CertRef,
        from: String,
        to: String,
        hosts: Vec<String>,
    },
    /// Two servers of the port claim one hostname; the filter configuration keeps it in the
    /// first listener only.
    HostnameConflict {
        hostname: String,
        kept_in: String,
        dropped_from: String,
        /// The dropped listener had no hostname left and is absent from the configuration.
        listener_dropped: bool,
    },
}

impl Finding {
    /// A collision: requests can arrive on another server's connection.
    pub fn is_collision(&self) -> bool {
        !matches!(self, Finding::HostnameConflict { .. })
    }
}

/// One listener of the generated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerPlan {
    pub name: String,
    pub hostnames: Vec<Pattern>,
}

/// One HTTPS port of a workload.
#[derive(Clone, Debug)]
pub struct PortReport {
    pub port: u32,
    /// The servers, with `label` made unique within the port.
    pub servers: Vec<Server>,
    /// The listeners of the generated configuration; servers left without hostnames are absent.
    pub listeners: Vec<ListenerPlan>,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug)]
pub struct WorkloadReport {
    pub workload: Workload,
    pub ports: Vec<PortReport>,
}

/// Groups servers by workload (in order of first appearance) and port (ascending), and analyses
/// each port.
pub fn analyse(servers: &[Server], certs: &CertStore) -> Vec<WorkloadReport> {
    let mut workloads: Vec<(Workload, Vec<Server>)> = Vec::new();
    for server in servers {
        match workloads.iter_mut().find(|(w, _)| *w == server.workload) {
            Some((_, list)) => list.push(server.clone()),
            None => workloads.push((server.workload.clone(), vec![server.clone()])),
        }
    }
    workloads
        .into_iter()
        .map(|(workload, servers)| {
            let ports: BTreeSet<u32> = servers.iter().map(|s| s.port).collect();
            let ports = ports
                .into_iter()
                .map(|port| {
                    let on_port: Vec<Server> =
                        servers.iter().filter(|s| s.port == port).cloned().collect();
                    analyse_port(port, on_port, certs)
                })
                .collect();
            WorkloadReport { workload, ports }
        })
        .collect()
}

fn analyse_port(port: u32, mut servers: Vec<Server>, certs: &CertStore) -> PortReport {
    unique_labels(&mut servers);
    let mut findings = shared_certificates(&servers, certs);
    findings.extend(san_coverage(&servers, certs));
    let (listeners, conflicts) = plan_listeners(&servers);
    findings.extend(conflicts);
    PortReport {
        port,
        servers,
        listeners,
        findings,
    }
}

/// Listener names must be unique in a configuration: a second `ns/gw/https` becomes
/// `ns/gw/https#2`.
fn unique_labels(servers: &mut [Server]) {
    let mut seen: Vec<String> = Vec::new();
    for server in servers.iter_mut() {
        let mut label = server.label.clone();
        let mut n = 1;
        while seen.contains(&label) {
            n += 1;
            label = format!("{}#{n}", server.label);
        }
        seen.push(label.clone());
        server.label = label;
    }
}

/// The host as it can be reached over a connection presenting `cert`: with known SANs, the
/// part of the host the certificate covers (or `None`); without, the whole host, since a
/// certificate served for a host must cover it for clients to connect at all.
fn reachable(cert: &CertRef, host: &Pattern, certs: &CertStore) -> Option<String> {
    match certs.get(cert) {
        Some(info) => info.sans.iter().find_map(|san| san.overlap(host)),
        None => Some(host.to_string()),
    }
}

fn shared_certificates(servers: &[Server], certs: &CertStore) -> Vec<Finding> {
    // Groups in order of first appearance; the index keeps large dumps linear.
    let mut groups: Vec<(&CertRef, Vec<&Server>)> = Vec::new();
    let mut index: HashMap<&CertRef, usize> = HashMap::new();
    for server in servers {
        match index.get(&server.cert).and_then(|&i| groups.get_mut(i)) {
            Some((_, list)) => list.push(server),
            None => {
                index.insert(&server.cert, groups.len());
                groups.push((&server.cert, vec![server]));
            }
        }
    }
    groups
        .into_iter()
        .filter(|(_, members)| members.len() > 1)
        .map(|(cert, members)| {
            let mut gateways: Vec<String> = Vec::new();
            let mut hosts: Vec<String> = Vec::new();
            for s in &members {
                push_unique(&mut gateways, s.origin.gateway());
                for h in &s.hosts {
                    if let Some(h) = reachable(cert, h, certs) {
                        push_unique(&mut hosts, h);
                    }
                }
            }
            let istio = members
                .iter()
                .all(|s| matches!(s.workload, Workload::Istio { .. }));
            Finding::SharedCertificate {
                cert: cert.clone(),
                servers: members.iter().map(|s| s.label.clone()).collect(),
                istio_code: (istio && gateways.len() > 1).then_some(ISTIO_DUPLICATE_CERT),
                gateways,
                hosts,
            }
        })
        .collect()
}

fn san_coverage(servers: &[Server], certs: &CertStore) -> Vec<Finding> {
    let mut findings = Vec::new();
    for from in servers {
        let Some(info) = certs.get(&from.cert) else {
            continue;
        };
        for to in servers {
            if to.cert == from.cert {
                continue; // Reported as a shared certificate.
            }
            let mut hosts = Vec::new();
            for host in &to.hosts {
                if let Some(h) = info.sans.iter().find_map(|san| san.overlap(host)) {
                    push_unique(&mut hosts, h);
                }
            }
            if !hosts.is_empty() {
                findings.push(Finding::CertificateCovers {
                    cert: from.cert.clone(),
                    from: from.label.clone(),
                    to: to.label.clone(),
                    hosts,
                });
            }
        }
    }
    findings
}

/// One listener per server, each hostname in the first server that names it: the filter
/// refuses a hostname in two listeners, so later claims become conflicts.
fn plan_listeners(servers: &[Server]) -> (Vec<ListenerPlan>, Vec<Finding>) {
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut listeners = Vec::new();
    let mut conflicts = Vec::new();
    for server in servers {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for host in &server.hosts {
            let key = host.to_string();
            match owner.get(&key) {
                Some(first) if *first != server.label => dropped.push((key, first.clone())),
                _ => {
                    owner.insert(key, server.label.clone());
                    kept.push(host.clone());
                }
            }
        }
        let listener_dropped = kept.is_empty();
        for (hostname, first) in dropped {
            conflicts.push(Finding::HostnameConflict {
                hostname,
                kept_in: first,
                dropped_from: server.label.clone(),
                listener_dropped,
            });
        }
        // A listener with no hostnames would be a catch-all: leave it out instead.
        if !listener_dropped {
            listeners.push(ListenerPlan {
                name: server.label.clone(),
                hostnames: kept,
            });
        }
    }
    (listeners, conflicts)
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertInfo, San};
    use crate::model::Origin;
    use std::collections::BTreeMap;

    fn secret(name: &str) -> CertRef {
        CertRef::Secret {
            namespace: "istio-system".into(),
            name: name.into(),
        }
    }

    fn server(gw: &str, port: u32, hosts: &[&str], cert: &str) -> Server {
        Server {
            workload: Workload::Istio {
                selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            },
            port,
            origin: Origin {
                kind: "Gateway",
                namespace: "default".into(),
                name: gw.into(),
                item: "servers[0]".into(),
            },
            label: format!("default/{gw}/https"),
            hosts: hosts.iter().map(|h| Pattern::parse(h).unwrap()).collect(),
            cert: secret(cert),
            istio_server: None,
        }
    }

    #[test]
    fn same_secret_in_two_gateways_is_ist0138() {
        let servers = [
            server("a", 443, &["a.example.com"], "wild"),
            server("b", 443, &["b.example.com"], "wild"),
        ];
        let report = analyse(&servers, &CertStore::new());
        assert_eq!(report.len(), 1);
        let port = &report[0].ports[0];
        assert_eq!(
            port.findings,
            [Finding::SharedCertificate {
                cert: secret("wild"),
                servers: vec!["default/a/https".into(), "default/b/https".into()],
                gateways: vec!["default/a".into(), "default/b".into()],
                hosts: vec!["a.example.com".into(), "b.example.com".into()],
                istio_code: Some(ISTIO_DUPLICATE_CERT),
            }]
        );
        assert_eq!(port.listeners.len(), 2);
    }

    #[test]
    fn ports_are_separate_and_distinct_certs_without_sans_are_quiet() {
        let servers = [
            server("a", 443, &["a.example.com"], "a"),
            server("b", 443, &["b.example.com"], "b"),
            server("c", 8443, &["c.example.com"], "a"),
        ];
        let report = analyse(&servers, &CertStore::new());
        let ports: Vec<u32> = report[0].ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, [443, 8443]);
        assert!(report[0].ports.iter().all(|p| p.findings.is_empty()));
    }

    #[test]
    fn sans_reveal_coverage_across_different_secrets() {
        let servers = [
            server("a", 443, &["a.example.com"], "a"),
            server("b", 443, &["b.example.com", "b.other.org"], "b"),
        ];
        let mut certs = CertStore::new();
        certs.insert(
            secret("a"),
            CertInfo {
                path: "a.pem".into(),
                sans: vec![San::Wildcard("example.com".into())],
            },
        );
        certs.insert(
            secret("b"),
            CertInfo {
                path: "b.pem".into(),
                sans: vec![San::Exact("b.example.com".into())],
            },
        );
        let findings = &analyse(&servers, &certs)[0].ports[0].findings;
        assert_eq!(
            findings,
            &[Finding::CertificateCovers {
                cert: secret("a"),
                from: "default/a/https".into(),
                to: "default/b/https".into(),
                hosts: vec!["b.example.com".into()],
            }]
        );
    }

    #[test]
    fn hostname_claimed_twice_stays_in_the_first_listener() {
        let servers = [
            server("a", 443, &["a.example.com", "*"], "x"),
            server("a", 443, &["A.example.com"], "y"),
            server("b", 443, &["*", "b.example.com"], "z"),
        ];
        let port = &analyse(&servers, &CertStore::new())[0].ports[0];
        let names: Vec<&str> = port.listeners.iter().map(|l| l.name.as_str()).collect();
        // The second server lost its only host: no listener, it would be a catch-all.
        assert_eq!(names, ["default/a/https", "default/b/https"]);
        assert_eq!(port.servers[1].label, "default/a/https#2");
        let mut tricky = [
            server("a", 443, &["x.test"], "x"),
            server("a", 443, &["y.test"], "x"),
            server("a", 443, &["z.test"], "x"),
        ];
        tricky[0].label = "l#2".into();
        tricky[1].label = "l".into();
        tricky[2].label = "l".into();
        unique_labels(&mut tricky);
        let labels: Vec<&str> = tricky.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["l#2", "l", "l#3"]);
        let conflicts: Vec<&Finding> = port.findings.iter().filter(|f| !f.is_collision()).collect();
        assert_eq!(conflicts.len(), 2);
        assert!(matches!(
            conflicts[0],
            Finding::HostnameConflict { hostname, listener_dropped: true, .. } if hostname == "a.example.com"
        ));
    }
}
