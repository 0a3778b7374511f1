//! The two renderings of one audit: a table for people and a JSON document for machines
//! (schema `sni-guard-audit/v1`, described in the README; fields are only ever added), plus the
//! WasmPlugin manifests as a YAML stream.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::analysis::{Finding, PortReport, WorkloadReport};
use crate::certs::CertStore;
use crate::generate::port_config;
use crate::merge::MergePlan;
use crate::model::{CertRef, Excluded, Inventory, Workload};

pub const SCHEMA: &str = "sni-guard-audit/v1";

/// Everything an audit produced, ready to render.
pub struct Audit<'a> {
    pub inventory: &'a Inventory,
    pub reports: &'a [WorkloadReport],
    pub certs: &'a CertStore,
    pub mode: &'a str,
    pub notes: Vec<String>,
}

impl Audit<'_> {
    pub fn collisions(&self) -> usize {
        self.findings().filter(|f| f.is_collision()).count()
    }

    pub fn conflicts(&self) -> usize {
        self.findings().filter(|f| !f.is_collision()).count()
    }

    fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.reports
            .iter()
            .flat_map(|w| &w.ports)
            .flat_map(|p| &p.findings)
    }

    fn port_count(&self) -> usize {
        self.reports.iter().map(|w| w.ports.len()).sum()
    }
}

/// Observations that are not findings: what could not be checked, what was given for nothing.
pub fn notes(inventory: &Inventory, certs: &CertStore) -> Vec<String> {
    let mut notes = Vec::new();
    let mut used: Vec<&CertRef> = Vec::new();
    for s in &inventory.servers {
        if !used.contains(&&s.cert) {
            used.push(&s.cert);
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|c| !certs.contains_key(c) && !matches!(c, CertRef::IstioMutual))
        .map(|c| c.to_string())
        .collect();
    if !unknown.is_empty() {
        notes.push(format!(
            "SANs not checked (only identical references compared, as istioctl does) for: {}; \
             give their PEM files with --cert or --certs to find certificates that cover each \
             other's hosts",
            unknown.join(", ")
        ));
    }
    for (cert, info) in certs {
        if !used.contains(&cert) {
            notes.push(format!(
                "{cert} ({}) is referenced by no audited server",
                info.path.display()
            ));
        } else if info.sans.is_empty() {
            notes.push(format!(
                "{cert} ({}) has no DNS subject alternative name: browsers accept it for no host",
                info.path.display()
            ));
        }
    }
    notes
}

/// One sentence per finding, shared by both renderings.
pub fn message(finding: &Finding) -> String {
    match finding {
        Finding::SharedCertificate {
            cert,
            servers,
            hosts,
            ..
        } => format!(
            "{cert} is presented by {}: a connection opened for any of them can carry requests \
             for {}",
            servers.join(", "),
            hosts.join(", ")
        ),
        Finding::CertificateCovers {
            cert,
            from,
            to,
            hosts,
        } => format!(
            "{cert} presented by {from} also covers {} of {to}: those requests can arrive on \
             {from}'s connections",
            hosts.join(", ")
        ),
        Finding::HostnameConflict {
            hostname,
            kept_in,
            dropped_from,
            listener_dropped,
        } => {
            let tail = if *listener_dropped {
                format!("; {dropped_from} has no hostname left and is not in the configuration")
            } else {
                String::new()
            };
            format!(
                "hostname `{hostname}` is claimed by {kept_in} and {dropped_from}: the \
                 configuration keeps it in {kept_in} only{tail}"
            )
        }
    }
}

/// The JSON report.
pub fn to_json(audit: &Audit, wasmplugins: Option<&[Value]>, merges: Option<&MergePlan>) -> Value {
    let workloads: Vec<Value> = audit
        .reports
        .iter()
        .map(|w| workload_json(w, audit))
        .collect();
    let excluded: Vec<Value> = audit.inventory.excluded.iter().map(excluded_json).collect();
    let inv = audit.inventory;
    let mut report = json!({
        "schema": SCHEMA,
        "summary": {
            "istio_gateways": inv.istio_gateways,
            "gateway_api_gateways": inv.gateway_api_gateways,
            "ignored_objects": inv.ignored,
            "workloads": audit.reports.len(),
            "ports": audit.port_count(),
            "servers": inv.servers.len(),
            "excluded": inv.excluded.len(),
            "collisions": audit.collisions(),
            "conflicts": audit.conflicts(),
        },
        "workloads": workloads,
        "excluded": excluded,
        "notes": audit.notes,
    });
    if let (Some(plugins), Some(map)) = (wasmplugins, report.as_object_mut()) {
        map.insert("wasmplugins".into(), Value::Array(plugins.to_vec()));
    }
    if let (Some(plan), Some(map)) = (merges, report.as_object_mut()) {
        let merges: Vec<Value> = plan
            .merges
            .iter()
            .map(|m| {
                json!({
                    "workload": m.workload,
                    "port": m.port,
                    "gateway": m.gateway,
                    "replaces": m.replaces,
                    "virtual_services": m.virtual_services,
                })
            })
            .collect();
        let refusals: Vec<Value> = plan
            .refusals
            .iter()
            .map(|r| json!({"workload": r.workload, "port": r.port, "reason": r.reason}))
            .collect();
        map.insert("merges".into(), Value::Array(merges));
        map.insert("merge_refusals".into(), Value::Array(refusals));
    }
    report
}

/// What `--merge` did, for people (standard error; the manifests go to standard output).
pub fn merge_text(plan: &MergePlan) -> String {
    let mut out = String::new();
    for m in &plan.merges {
        let name = m.gateway.pointer("/metadata/name").and_then(Value::as_str);
        let namespace = m
            .gateway
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let _ = writeln!(
            out,
            "\nMERGE {}  port {}: Gateway {}/{} (below) serves all their hosts on one filter \
             chain and one route table",
            m.workload,
            m.port,
            namespace.unwrap_or_default(),
            name.unwrap_or_default()
        );
        for r in &m.replaces {
            let _ = writeln!(out, "  remove {r} (delete a Gateway left without servers)");
        }
        for v in &m.virtual_services {
            let _ = writeln!(out, "  {v}");
        }
    }
    for r in &plan.refusals {
        let _ = writeln!(
            out,
            "\nNO MERGE {}  port {}: {}; the WasmPlugin below keeps them apart with 421",
            r.workload, r.port, r.reason
        );
    }
    out
}

fn workload_json(w: &WorkloadReport, audit: &Audit) -> Value {
    let ports: Vec<Value> = w.ports.iter().map(|p| port_json(p, audit)).collect();
    match &w.workload {
        Workload::Istio { selector } => json!({
            "id": w.workload.id(),
            "kind": "istio",
            "selector": selector,
            "ports": ports,
        }),
        Workload::GatewayApi {
            namespace,
            name,
            class,
        } => json!({
            "id": w.workload.id(),
            "kind": "gateway-api",
            "gateway": format!("{namespace}/{name}"),
            "gateway_class": class,
            "ports": ports,
        }),
    }
}

fn port_json(p: &PortReport, audit: &Audit) -> Value {
    let servers: Vec<Value> = p
        .servers
        .iter()
        .map(|s| {
            let sans = audit
                .certs
                .get(&s.cert)
                .map(|c| c.sans.iter().map(ToString::to_string).collect::<Vec<_>>());
            json!({
                "listener": s.label,
                "kind": s.origin.kind,
                "gateway": s.origin.gateway(),
                "source": s.origin.item,
                "hosts": s.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "certificate": s.cert.to_string(),
                "certificate_sans": sans,
            })
        })
        .collect();
    let findings: Vec<Value> = p.findings.iter().map(finding_json).collect();
    json!({
        "port": p.port,
        "servers": servers,
        "findings": findings,
        "config": port_config(p, audit.mode),
    })
}

fn finding_json(f: &Finding) -> Value {
    let message = message(f);
    match f {
        Finding::SharedCertificate {
            cert,
            servers,
            gateways,
            hosts,
            istio_code,
        } => json!({
            "type": "shared-certificate",
            "istio_code": istio_code,
            "certificate": cert.to_string(),
            "servers": servers,
            "gateways": gateways,
            "hosts": hosts,
            "message": message,
        }),
        Finding::CertificateCovers {
            cert,
            from,
            to,
            hosts,
        } => json!({
            "type": "certificate-covers",
            "istio_code": null,
            "certificate": cert.to_string(),
            "from": from,
            "to": to,
            "hosts": hosts,
            "message": message,
        }),
        Finding::HostnameConflict {
            hostname,
            kept_in,
            dropped_from,
            listener_dropped,
        } => json!({
            "type": "hostname-conflict",
            "istio_code": null,
            "hostname": hostname,
            "kept_in": kept_in,
            "dropped_from": dropped_from,
            "listener_dropped": listener_dropped,
            "message": message,
        }),
    }
}

fn excluded_json(e: &Excluded) -> Value {
    json!({
        "kind": e.origin.kind,
        "gateway": e.origin.gateway(),
        "source": e.origin.item,
        "host": e.host,
        "reason": e.reason,
    })
}

/// The table for people.
pub fn to_table(audit: &Audit) -> String {
    let inv = audit.inventory;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sni-guard-audit: Gateways: {} (Istio {}, Gateway API {}); workloads: {}; HTTPS ports: {}; \
         servers: {}; excluded: {}",
        inv.istio_gateways + inv.gateway_api_gateways,
        inv.istio_gateways,
        inv.gateway_api_gateways,
        audit.reports.len(),
        audit.port_count(),
        inv.servers.len(),
        inv.excluded.len(),
    );
    for w in audit.reports {
        for p in &w.ports {
            let _ = writeln!(out, "\n{}  port {}", describe(&w.workload), p.port);
            let rows: Vec<[String; 3]> = p
                .servers
                .iter()
                .map(|s| {
                    let hosts: Vec<String> = s.hosts.iter().map(ToString::to_string).collect();
                    [s.label.clone(), s.cert.to_string(), hosts.join(", ")]
                })
                .collect();
            let header = ["LISTENER".to_owned(), "CERTIFICATE".into(), "HOSTS".into()];
            let w0 = width(&header, &rows, 0);
            let w1 = width(&header, &rows, 1);
            for [a, b, c] in std::iter::once(&header).chain(&rows) {
                let _ = writeln!(out, "  {a:w0$}  {b:w1$}  {c}");
            }
            for f in &p.findings {
                let tag = match f {
                    Finding::SharedCertificate {
                        istio_code: Some(code),
                        ..
                    } => format!("COLLISION [{code}]"),
                    _ if f.is_collision() => "COLLISION".into(),
                    _ => "CONFLICT".into(),
                };
                let _ = writeln!(out, "  {tag}: {}", message(f));
            }
        }
    }
    if !inv.excluded.is_empty() {
        let _ = writeln!(
            out,
            "\nEXCLUDED (not TLS-terminated HTTP, or not a usable host)"
        );
        for e in &inv.excluded {
            let host = e
                .host
                .as_deref()
                .map(|h| format!(" host `{h}`"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {}{host}: {}", e.origin, e.reason);
        }
    }
    if !audit.notes.is_empty() {
        let _ = writeln!(out, "\nNOTES");
        for n in &audit.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    let (collisions, conflicts) = (audit.collisions(), audit.conflicts());
    let _ = writeln!(
        out,
        "\ncollisions: {collisions}; conflicts: {conflicts}. {}",
        if collisions + conflicts == 0 {
            "No gateway can receive another's coalesced requests."
        } else {
            "Generate the filter configuration with --json or --wasmplugin and install it in \
             dry_run first."
        }
    );
    out
}

fn describe(w: &Workload) -> String {
    match w {
        Workload::Istio { .. } => format!("WORKLOAD {}", w.id()),
        Workload::GatewayApi { class, .. } => {
            format!("WORKLOAD {} (class {class})", w.id())
        }
    }
}

fn width(header: &[String; 3], rows: &[[String; 3]], col: usize) -> usize {
    std::iter::once(header)
        .chain(rows)
        .filter_map(|r| r.get(col))
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
}

/// The manifests as one YAML stream for `kubectl apply -f -`.
pub fn manifests_yaml(plugins: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for plugin in plugins {
        let yaml = serde_norway::to_string(plugin).map_err(|e| e.to_string())?;
        out.push_str("---\n");
        if plugin.pointer("/spec/match").is_some() {
            out.push_str(
                "# match.ports is the Gateway server port; if the gateway Service maps it to\n\
                 # another targetPort, check the listener port with `istioctl proxy-config \
                 listener` and adjust.\n",
            );
        }
        out.push_str(&yaml);
    }
    Ok(out)
}
