//! The sni-guard configuration for each audited port, and the Istio WasmPlugin that installs
//! it, so that the listener groups the audit reports are the ones the filter enforces.
//!
//! Every configuration is run through the filter's own parser before it is shown: a
//! configuration the filter would refuse is a bug here, never something to hand to Envoy.

use serde_json::{json, Map, Value};

use crate::analysis::{PortReport, WorkloadReport};
use crate::model::Workload;

/// Placeholder image reference; operators replace it with their registry's copy (`--url`).
pub const DEFAULT_URL: &str = "oci://ghcr.io/sni-guard/sni-guard:0.1.0";

/// The Istio release from which WasmPlugin accepts `failStrategy: FAIL_RELOAD` (the 1.26 schema
/// refuses it).
pub const FAIL_RELOAD_SINCE: (u32, u32) = (1, 27);
/// The oldest Istio release the generated manifests are validated against.
pub const OLDEST_ISTIO: (u32, u32) = (1, 26);

/// Options of the generated configuration and manifests.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// `dry_run` (default: observe first) or `enforce`.
    pub mode: String,
    pub url: String,
    /// Where Istio gateway deployments run; their WasmPlugins go there too.
    pub istio_namespace: String,
    /// The Istio release (major, minor) the manifests are for.
    pub istio_release: (u32, u32),
}

impl GenerateOptions {
    /// Fail closed, never open (sni-guard is a security check). FAIL_RELOAD where the release
    /// has it: a VM that fails at run time costs one 503 and is replaced, where FAIL_CLOSE
    /// answers 503 to every request until the pod restarts.
    pub fn fail_strategy(&self) -> &'static str {
        if self.istio_release >= FAIL_RELOAD_SINCE {
            "FAIL_RELOAD"
        } else {
            "FAIL_CLOSE"
        }
    }
}

/// Parses `--istio-release`: `1.27` or `1.27.3`, at least [`OLDEST_ISTIO`].
pub fn parse_release(text: &str) -> Result<(u32, u32), String> {
    let mut parts = text.split('.').map(str::parse::<u32>);
    let release = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => {
            return Err(format!(
                "--istio-release `{text}`: expected MAJOR.MINOR, e.g. 1.27"
            ))
        }
    };
    if release < OLDEST_ISTIO {
        return Err(format!(
            "--istio-release `{text}`: the manifests are made for Istio {}.{} or later",
            OLDEST_ISTIO.0, OLDEST_ISTIO.1
        ));
    }
    Ok(release)
}

/// The plugin configuration for one port: one listener per server, hostnames as planned.
pub fn port_config(port: &PortReport, mode: &str) -> Value {
    let listeners: Vec<Value> = port
        .listeners
        .iter()
        .map(|l| {
            let hostnames: Vec<String> = l.hostnames.iter().map(ToString::to_string).collect();
            json!({"name": l.name, "hostnames": hostnames})
        })
        .collect();
    json!({"mode": mode, "listeners": listeners})
}

/// Runs a generated configuration through the filter's parser.
pub fn check(config: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    sni_guard::config::parse(&bytes)
        .map(|_| ())
        .map_err(|e| format!("generated configuration refused by sni-guard: {e}"))
}

/// The WasmPlugins for one workload: one without a port match when the workload has a single
/// HTTPS port (the usual case), else one per port restricted with `match.ports`.
pub fn wasm_plugins(
    report: &WorkloadReport,
    options: &GenerateOptions,
    taken: &mut Vec<String>,
) -> Vec<Value> {
    let all: Vec<u32> = report.ports.iter().map(|p| p.port).collect();
    wasm_plugins_for_ports(report, &all, options, taken)
}

/// The WasmPlugins for some ports of a workload (those `--merge` could not fix).
pub fn wasm_plugins_for_ports(
    report: &WorkloadReport,
    ports: &[u32],
    options: &GenerateOptions,
    taken: &mut Vec<String>,
) -> Vec<Value> {
    let (namespace, labels, base) = match &report.workload {
        Workload::Istio { selector } => {
            let base = if selector.is_empty() {
                "all".to_owned()
            } else {
                selector.values().cloned().collect::<Vec<_>>().join("-")
            };
            let labels: Map<String, Value> = selector
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            (options.istio_namespace.clone(), labels, base)
        }
        Workload::GatewayApi {
            namespace, name, ..
        } => {
            // The label Istio (and the Gateway API's own conventions) put on a Gateway's pods.
            let mut labels = Map::new();
            labels.insert(
                "gateway.networking.k8s.io/gateway-name".into(),
                Value::String(name.clone()),
            );
            (namespace.clone(), labels, name.clone())
        }
    };
    let single = report.ports.len() == 1;
    report
        .ports
        .iter()
        .filter(|port| ports.contains(&port.port))
        .map(|port| {
            let wanted = if single {
                format!("sni-guard-{base}")
            } else {
                format!("sni-guard-{base}-{}", port.port)
            };
            let name = unique_name(&dns_label(&wanted), &namespace, taken);
            let mut spec = json!({
                "selector": {"matchLabels": labels},
                "url": options.url,
                "phase": "AUTHN",
                "failStrategy": options.fail_strategy(),
                "pluginConfig": port_config(port, &options.mode),
            });
            if !single {
                if let Some(spec) = spec.as_object_mut() {
                    spec.insert("match".into(), json!([{"ports": [{"number": port.port}]}]));
                }
            }
            json!({
                "apiVersion": "extensions.istio.io/v1alpha1",
                "kind": "WasmPlugin",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            })
        })
        .collect()
}

/// Lowercase letters, digits and `-`, at most 63 characters, as Kubernetes names require.
pub fn dns_label(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let mut out: String = out.trim_matches('-').chars().take(58).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

pub fn unique_name(wanted: &str, namespace: &str, taken: &mut Vec<String>) -> String {
    let mut name = wanted.to_owned();
    let mut n = 1;
    while taken.contains(&format!("{namespace}/{name}")) {
        n += 1;
        name = format!("{wanted}-{n}");
    }
    taken.push(format!("{namespace}/{name}"));
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyse;
    use crate::certs::CertStore;
    use crate::model::{CertRef, Origin, Server};
    use sni_guard::listeners::Pattern;
    use std::collections::BTreeMap;

    fn server(port: u32, hosts: &[&str], label: &str) -> Server {
        Server {
            workload: Workload::Istio {
                selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            },
            port,
            origin: Origin {
                kind: "Gateway",
                namespace: "default".into(),
                name: "gw".into(),
                item: "servers[0]".into(),
            },
            label: label.into(),
            hosts: hosts.iter().map(|h| Pattern::parse(h).unwrap()).collect(),
            cert: CertRef::IstioMutual,
            istio_server: None,
        }
    }

    fn options() -> GenerateOptions {
        GenerateOptions {
            mode: "dry_run".into(),
            url: DEFAULT_URL.into(),
            istio_namespace: "istio-system".into(),
            istio_release: FAIL_RELOAD_SINCE,
        }
    }

    #[test]
    fn configs_pass_the_filter_parser_even_with_conflicts() {
        let servers = [
            server(443, &["a.example.com", "*"], "x"),
            server(443, &["a.example.com", "*.example.com"], "x"),
            server(443, &["*"], "y"),
        ];
        let report = analyse(&servers, &CertStore::new());
        let config = port_config(&report[0].ports[0], "enforce");
        check(&config).unwrap();
        assert_eq!(
            config,
            json!({"mode": "enforce", "listeners": [
                {"name": "x", "hostnames": ["a.example.com", "*"]},
                {"name": "x#2", "hostnames": ["*.example.com"]},
            ]})
        );
    }

    #[test]
    fn one_plugin_per_port_when_several() {
        let servers = [
            server(443, &["a.test"], "a"),
            server(8443, &["b.test"], "b"),
        ];
        let report = analyse(&servers, &CertStore::new());
        let mut taken = Vec::new();
        let plugins = wasm_plugins(&report[0], &options(), &mut taken);
        assert_eq!(plugins.len(), 2);
        assert_eq!(
            plugins[0]["metadata"]["name"],
            "sni-guard-ingressgateway-443"
        );
        assert_eq!(plugins[1]["spec"]["match"][0]["ports"][0]["number"], 8443);
        let single = analyse(&servers[..1], &CertStore::new());
        let plugins = wasm_plugins(&single[0], &options(), &mut taken);
        assert_eq!(plugins[0]["metadata"]["name"], "sni-guard-ingressgateway");
        assert!(plugins[0]["spec"].get("match").is_none());
        let again = wasm_plugins(&single[0], &options(), &mut taken);
        assert_eq!(again[0]["metadata"]["name"], "sni-guard-ingressgateway-2");
    }

    #[test]
    fn fail_reload_from_1_27_fail_close_on_1_26() {
        let servers = [server(443, &["a.test"], "a")];
        let report = analyse(&servers, &CertStore::new());
        let plugin = |release: &str| {
            let options = GenerateOptions {
                istio_release: parse_release(release).unwrap(),
                ..options()
            };
            wasm_plugins(&report[0], &options, &mut Vec::new())[0]["spec"]["failStrategy"].clone()
        };
        assert_eq!(plugin("1.26"), "FAIL_CLOSE");
        assert_eq!(plugin("1.27.2"), "FAIL_RELOAD");
        assert_eq!(plugin("1.30"), "FAIL_RELOAD");
        assert!(parse_release("1.25").unwrap_err().contains("1.26 or later"));
        assert!(parse_release("latest").unwrap_err().contains("MAJOR.MINOR"));
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(
            dns_label("sni-guard-Istio_Ingress.gw--x-"),
            "sni-guard-istio-ingress-gw-x"
        );
        assert!(dns_label(&"a".repeat(100)).len() <= 58);
    }
}
