//! `sni-guard-audit`: reads the Gateways of a cluster (kubectl output), finds the servers whose
//! hosts browsers can reach over one coalesced HTTP/2 connection, and writes the sni-guard
//! configuration that answers 421 to such requests instead of the gateway's 404.
//!
//! Exit codes: 0 no finding, 1 findings, 2 the inputs (or arguments) could not be used.

mod analysis;
mod certs;
mod generate;
mod input;
mod merge;
mod model;
mod output;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::certs::CertStore;
use crate::generate::GenerateOptions;
use crate::input::ReadOptions;
use crate::model::Inventory;
use crate::output::Audit;

const USAGE: &str = "\
sni-guard-audit: find gateways that share a certificate and so serve each other's coalesced
HTTP/2 requests, and generate the sni-guard configuration that keeps them apart.

USAGE:
    sni-guard-audit [OPTIONS] FILE...

FILE is the JSON or YAML output of
    kubectl get gateways.networking.istio.io -A -o yaml
    kubectl get gateways.gateway.networking.k8s.io -A -o yaml
(a List, or several documents); `-` reads standard input.

OPTIONS:
    --cert KEY=PEM          Certificate (PEM, leaf first) of a Secret, KEY `namespace/name`, or of
                            a file mounted in the gateway pod, KEY its absolute path; repeatable.
                            Enables the SAN check: certificates that cover each other's hosts.
    --certs DIR             Read DIR/<namespace>/<secret>.pem (or .crt) as --cert would.
    --istio-namespace NS    Namespace of the Istio gateway deployments, where a bare
                            credentialName is looked up [default: istio-system].
    --mode MODE             Mode of the generated configuration: dry_run or enforce
                            [default: dry_run].
    --json                  Write the report as JSON (schema sni-guard-audit/v1).
    --wasmplugin            Write Istio WasmPlugin manifests (YAML) to standard output; the table
                            goes to standard error. With --json, add them to the report instead.
    --url URL               Image of the WasmPlugins [default: oci://ghcr.io/sni-guard/sni-guard:0.1.0].
    --istio-release R       Istio release the manifests are for, e.g. 1.26 [default: 1.27]:
                            failStrategy FAIL_RELOAD from 1.27, FAIL_CLOSE on 1.26.
    --merge                 Write the fix that needs no filter: for each port where servers share
                            a certificate, one Istio Gateway with one server listing all their
                            hosts (YAML on standard output; what to remove and which
                            VirtualServices to rebind on standard error). Where merging is
                            impossible, say why and write the WasmPlugins for those ports.
                            Also reads VirtualServices (kubectl get virtualservices -A -o yaml).
    -h, --help              Show this help.
    -V, --version           Show the version.

EXIT STATUS:
    0  no collision and no conflict
    1  collisions (servers reachable over one connection) or hostname conflicts found
    2  unusable arguments or input
";

#[derive(Debug)]
struct Args {
    files: Vec<String>,
    certs: Vec<(String, PathBuf)>,
    cert_dirs: Vec<PathBuf>,
    istio_namespace: String,
    mode: String,
    url: String,
    json: bool,
    wasmplugin: bool,
    merge: bool,
    istio_release: (u32, u32),
}

enum Parsed {
    Run(Args),
    Help,
    Version,
}

fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args {
        files: Vec::new(),
        certs: Vec::new(),
        cert_dirs: Vec::new(),
        istio_namespace: "istio-system".into(),
        mode: "dry_run".into(),
        url: generate::DEFAULT_URL.into(),
        json: false,
        wasmplugin: false,
        merge: false,
        istio_release: generate::FAIL_RELOAD_SINCE,
    };
    let mut raw = raw.into_iter();
    let mut only_files = false;
    while let Some(arg) = raw.next() {
        if only_files || arg == "-" || !arg.starts_with('-') {
            args.files.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--" => only_files = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--json" => args.json = true,
            "--wasmplugin" => args.wasmplugin = true,
            "--merge" => args.merge = true,
            "--istio-release" => {
                args.istio_release = generate::parse_release(&value("--istio-release")?)?;
            }
            "--cert" => {
                let v = value("--cert")?;
                let (key, path) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--cert `{v}`: expected KEY=PEM-FILE"))?;
                args.certs.push((key.to_owned(), PathBuf::from(path)));
            }
            "--certs" => args.cert_dirs.push(PathBuf::from(value("--certs")?)),
            "--istio-namespace" => args.istio_namespace = value("--istio-namespace")?,
            "--mode" => {
                let mode = value("--mode")?;
                if mode != "dry_run" && mode != "enforce" {
                    return Err(format!("--mode `{mode}`: expected `dry_run` or `enforce`"));
                }
                args.mode = mode;
            }
            "--url" => args.url = value("--url")?,
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if args.files.is_empty() {
        return Err("no input: give the kubectl output as FILE, or `-` for standard input".into());
    }
    Ok(Parsed::Run(args))
}

fn main() -> ExitCode {
    let parsed = match parse_args(std::env::args().skip(1)) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    match parsed {
        Parsed::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Parsed::Version => {
            println!("sni-guard-audit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Parsed::Run(args) => match run(&args) {
            Ok(code) => code,
            Err(e) => fail(&e),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("sni-guard-audit: error: {message}");
    ExitCode::from(2)
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let read_options = ReadOptions {
        istio_namespace: args.istio_namespace.clone(),
    };
    let mut inventory = Inventory::default();
    let mut stdin_read = false;
    for file in &args.files {
        let (name, text) = if file == "-" {
            if stdin_read {
                return Err("`-` given twice".into());
            }
            stdin_read = true;
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("<stdin>: {e}"))?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            (file.clone(), text)
        };
        input::read_source(&name, &text, &read_options, &mut inventory)
            .map_err(|e| e.to_string())?;
    }

    let mut store = CertStore::new();
    for dir in &args.cert_dirs {
        certs::load_dir(dir, &mut store)?;
    }
    for (key, path) in &args.certs {
        let key = certs::parse_key(key)?;
        store.insert(key, certs::load_pem(path)?);
    }

    let reports = analysis::analyse(&inventory.servers, &store);
    let gen = GenerateOptions {
        mode: args.mode.clone(),
        url: args.url.clone(),
        istio_namespace: args.istio_namespace.clone(),
        istio_release: args.istio_release,
    };
    for port in reports.iter().flat_map(|w| &w.ports) {
        generate::check(&generate::port_config(port, &gen.mode))
            .map_err(|e| format!("internal error, please report: {e}"))?;
    }
    let mut taken = Vec::new();
    let merges = args.merge.then(|| {
        merge::plan(
            &reports,
            &inventory.virtual_services,
            &args.istio_namespace,
            &mut taken,
        )
    });
    let plugins = if let Some(plan) = &merges {
        // The fallback: the filter for the ports no merge fixes.
        let plugins: Vec<_> = reports
            .iter()
            .flat_map(|w| {
                let ports = plan.refused_ports(&w.workload);
                generate::wasm_plugins_for_ports(w, &ports, &gen, &mut taken)
            })
            .collect();
        Some(plugins)
    } else if args.wasmplugin {
        let plugins: Vec<_> = reports
            .iter()
            .flat_map(|w| generate::wasm_plugins(w, &gen, &mut taken))
            .collect();
        Some(plugins)
    } else {
        None
    };
    let audit = Audit {
        inventory: &inventory,
        reports: &reports,
        certs: &store,
        mode: &gen.mode,
        notes: output::notes(&inventory, &store),
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if args.json {
        let report = output::to_json(&audit, plugins.as_deref(), merges.as_ref());
        serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|s| writeln!(out, "{s}").map_err(|e| e.to_string()))
    } else if let Some(plugins) = &plugins {
        eprint!("{}", output::to_table(&audit));
        let mut manifests = Vec::new();
        if let Some(plan) = &merges {
            eprint!("{}", output::merge_text(plan));
            manifests.extend(plan.merges.iter().map(|m| m.gateway.clone()));
        }
        manifests.extend(plugins.iter().cloned());
        output::manifests_yaml(&manifests)
            .and_then(|s| write!(out, "{s}").map_err(|e| e.to_string()))
    } else {
        write!(out, "{}", output::to_table(&audit)).map_err(|e| e.to_string())
    };
    written.map_err(|e| format!("writing the report: {e}"))?;

    Ok(if audit.collisions() + audit.conflicts() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(a) => Ok(a),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn flags_and_files() {
        let a = parse(&[
            "--json",
            "gw.yaml",
            "--cert",
            "ns/a=a.pem",
            "--cert=/etc/c.crt=c.pem",
            "--mode=enforce",
            "-",
        ])
        .unwrap();
        assert!(a.json && !a.wasmplugin);
        assert_eq!(a.files, ["gw.yaml", "-"]);
        assert_eq!(a.certs[1], ("/etc/c.crt".into(), PathBuf::from("c.pem")));
        assert_eq!(a.mode, "enforce");
    }

    #[test]
    fn bad_arguments() {
        assert!(parse(&[]).unwrap_err().contains("no input"));
        assert!(parse(&["x", "--mode", "audit"])
            .unwrap_err()
            .contains("dry_run"));
        assert!(parse(&["x", "--cert", "ns/a"])
            .unwrap_err()
            .contains("KEY=PEM"));
        assert!(parse(&["x", "--frobnicate"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(parse(&["x", "--certs"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&["x", "--istio-release", "1.20"])
            .unwrap_err()
            .contains("1.26 or later"));
        let a = parse(&["x", "--merge", "--istio-release=1.26"]).unwrap();
        assert!(a.merge && a.istio_release == (1, 26));
    }
}
