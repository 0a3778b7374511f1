//! The built binary against the fixtures: exit codes, findings, and configurations that the
//! filter's own parser accepts and that answer 421 where the audit says requests cross over.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use sni_guard::policy::{Pass, Reason, Verdict};

const BIN: &str = env!("CARGO_BIN_EXE_sni-guard-audit");

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, "")
}

/// `--json` report of the given arguments; asserts the exit code.
fn report(args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let r = run(&all);
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["schema"], "sni-guard-audit/v1");
    every_config_parses(&report);
    report
}

/// Every generated configuration must be one the filter accepts.
fn every_config_parses(report: &Value) {
    for w in report["workloads"].as_array().unwrap() {
        for p in w["ports"].as_array().unwrap() {
            let bytes = serde_json::to_vec(&p["config"]).unwrap();
            if let Err(e) = sni_guard::config::parse(&bytes) {
                panic!("config of {} port {} refused: {e}", w["id"], p["port"]);
            }
        }
    }
}

fn port<'a>(report: &'a Value, workload: &str, number: u64) -> &'a Value {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == workload)
        .unwrap_or_else(|| panic!("no workload {workload}"))["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == number)
        .unwrap_or_else(|| panic!("no port {number} in {workload}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn decide(config: &Value, sni: &str, host: &str) -> Verdict {
    let policy = sni_guard::config::parse(&serde_json::to_vec(config).unwrap()).unwrap();
    policy.decide(Some(sni.as_bytes()), || Some(host))
}

const INGRESS: &str = "istio:istio=ingressgateway";

#[test]
fn incident_two_gateways_one_wildcard_certificate() {
    let table = run(&[&fixture("incident.yaml")]);
    assert_eq!(table.code, 1, "{}", table.stderr);
    assert!(
        table.stdout.contains("COLLISION [IST0138]"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("a.example.com, b.example.com"));
    assert!(table.stdout.contains("port 80 protocol `HTTP`"));

    let r = report(&["--mode", "enforce", &fixture("incident.yaml")], 1);
    assert_eq!(r["summary"]["collisions"], 1);
    let p = port(&r, INGRESS, 443);
    let f = &p["findings"][0];
    assert_eq!(f["type"], "shared-certificate");
    assert_eq!(f["istio_code"], "IST0138");
    assert_eq!(f["certificate"], "secret istio-system/wildcard-example-com");
    assert_eq!(
        strings(&f["gateways"]),
        ["team-a/gateway-a", "team-b/gateway-b"]
    );
    assert_eq!(strings(&f["hosts"]), ["a.example.com", "b.example.com"]);
    // What the filter makes of it: the coalesced request gets 421, the right one passes.
    let config = &p["config"];
    assert_eq!(config["mode"], "enforce");
    assert_eq!(
        decide(config, "a.example.com", "b.example.com"),
        Verdict::Misdirected(Reason::ListenerMismatch)
    );
    assert_eq!(
        decide(config, "b.example.com", "b.example.com:443"),
        Verdict::Pass(Pass::SameListener)
    );
}

#[test]
fn distinct_certificates_no_finding() {
    let r = report(&[&fixture("distinct.json")], 0);
    assert_eq!(r["summary"]["collisions"], 0);
    let p = port(&r, INGRESS, 443);
    assert!(p["findings"].as_array().unwrap().is_empty());
    // The configuration is still useful: the filter keeps the two apart in dry_run.
    assert_eq!(p["config"]["mode"], "dry_run");
    assert_eq!(p["config"]["listeners"].as_array().unwrap().len(), 2);
    let table = run(&[&fixture("distinct.json")]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("collisions: 0; conflicts: 0"));
}

#[test]
fn several_ports_namespaced_hosts_and_mounted_files() {
    let r = report(&[&fixture("ports.yaml")], 1);
    let ports: Vec<u64> = r["workloads"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [443, 8443, 9443]);
    // `*/shop.example.com`, `./cart.example.com`: namespace part gone.
    let p443 = port(&r, INGRESS, 443);
    assert_eq!(
        strings(&p443["servers"][0]["hosts"]),
        ["shop.example.com", "cart.example.com"]
    );
    assert!(p443["findings"].as_array().unwrap().is_empty());
    // Same secret on another port: no coalescing (another origin).
    assert!(port(&r, INGRESS, 9443)["findings"]
        .as_array()
        .unwrap()
        .is_empty());
    // Same mounted certificate file on 8443.
    let f = &port(&r, INGRESS, 8443)["findings"][0];
    assert_eq!(f["certificate"], "file /etc/istio/admin/tls.crt");
    assert_eq!(
        strings(&f["hosts"]),
        ["admin.example.com", "blog-admin.example.com"]
    );
    // Another selector is another workload, even with the same secret name.
    assert!(port(&r, "istio:istio=internal-gateway", 443)["findings"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(r["summary"]["collisions"], 1);
}

#[test]
fn gateway_api_listeners_with_and_without_hostname() {
    let r = report(&[&fixture("gateway-api.yaml")], 1);
    let web = port(&r, "gateway-api:shop/web", 443);
    let listeners = web["config"]["listeners"].as_array().unwrap();
    let names: Vec<&str> = listeners
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop/web/www", "shop/web/api", "shop/web/default"]);
    assert_eq!(strings(&listeners[2]["hostnames"]), ["*"]);
    let f = &web["findings"][0];
    assert_eq!(f["type"], "shared-certificate");
    assert_eq!(f["istio_code"], Value::Null);
    assert_eq!(strings(&f["servers"]), ["shop/web/www", "shop/web/api"]);
    // Another Gateway is another deployment: no finding despite the same Secret.
    assert!(port(&r, "gateway-api:blog/other", 443)["findings"]
        .as_array()
        .unwrap()
        .is_empty());
    let excluded: Vec<&str> = r["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(excluded, ["listeners[http]", "listeners[db]"]);
    assert!(r["excluded"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("passthrough"));
    assert_eq!(r["workloads"][0]["gateway_class"], "istio");
}

#[test]
fn tls_passthrough_is_excluded() {
    let r = report(&[&fixture("passthrough.yaml")], 0);
    assert_eq!(r["summary"]["excluded"], 3);
    assert_eq!(r["summary"]["servers"], 1);
    for e in r["excluded"].as_array().unwrap() {
        assert!(e["reason"].as_str().unwrap().contains("PASSTHROUGH"), "{e}");
    }
    let hosts = &port(&r, INGRESS, 443)["config"]["listeners"][0]["hostnames"];
    assert_eq!(strings(hosts), ["app.example.com"]);
}

#[test]
fn certificate_sans_reveal_what_names_do_not() {
    // Without certificates: three different secrets, nothing to report.
    report(&[&fixture("san.yaml")], 0);

    let certs = fixture("certs");
    let by_dir = report(&[&fixture("san.yaml"), "--certs", &certs], 1);
    let by_key = report(
        &[
            &fixture("san.yaml"),
            "--cert",
            &format!(
                "istio-system/wildcard-example-com={}",
                fixture("certs/istio-system/wildcard-example-com.pem")
            ),
        ],
        1,
    );
    for r in [&by_dir, &by_key] {
        let p = port(r, INGRESS, 443);
        let findings = p["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
        let f = &findings[0];
        assert_eq!(f["type"], "certificate-covers");
        assert_eq!(f["from"], "team-a/gateway-a/https");
        assert_eq!(f["to"], "team-b/gateway-b/https");
        assert_eq!(strings(&f["hosts"]), ["b.example.com"]);
        assert_eq!(
            strings(&p["servers"][0]["certificate_sans"]),
            ["*.example.com"]
        );
    }
    // The other two certificates are known from the directory: no note about them.
    let notes = by_dir["notes"].as_array().unwrap();
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn hostname_claimed_twice_is_a_conflict_and_the_config_stays_valid() {
    let r = report(&[&fixture("conflict.yaml")], 1);
    assert_eq!(r["summary"]["conflicts"], 1);
    assert_eq!(r["summary"]["collisions"], 0);
    let p = port(&r, INGRESS, 443);
    let f = &p["findings"][0];
    assert_eq!(f["type"], "hostname-conflict");
    assert_eq!(f["hostname"], "shop.example.com");
    assert_eq!(f["kept_in"], "shop/shop/https");
    assert_eq!(f["listener_dropped"], true);
    assert_eq!(p["config"]["listeners"].as_array().unwrap().len(), 1);
    let table = run(&[&fixture("conflict.yaml")]);
    assert!(table
        .stdout
        .contains("CONFLICT: hostname `shop.example.com`"));
}

#[test]
fn wasmplugin_manifest_installs_the_generated_config() {
    let r = run(&[&fixture("incident.yaml"), "--wasmplugin"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("IST0138"), "table goes to stderr");
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&r.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 1);
    let p = &docs[0];
    assert_eq!(p["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(p["kind"], "WasmPlugin");
    assert_eq!(p["metadata"]["namespace"], "istio-system");
    assert_eq!(
        p["spec"]["selector"]["matchLabels"]["istio"],
        "ingressgateway"
    );
    assert_eq!(p["spec"]["url"], "oci://ghcr.io/sni-guard/sni-guard:0.1.0");
    assert_eq!(p["spec"]["phase"], "AUTHN");
    assert_eq!(p["spec"]["failStrategy"], "FAIL_RELOAD");
    assert!(p["spec"].get("match").is_none());
    let config = &p["spec"]["pluginConfig"];
    sni_guard::config::parse(&serde_json::to_vec(config).unwrap()).unwrap();
    assert_eq!(config["mode"], "dry_run");

    // Several ports: one plugin per port, restricted by match.ports; same config as the report.
    let r = run(&[&fixture("ports.yaml"), "--wasmplugin", "--json"]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let plugins = report["wasmplugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 4);
    assert_eq!(plugins[1]["spec"]["match"][0]["ports"][0]["number"], 8443);
    assert_eq!(
        plugins[1]["spec"]["pluginConfig"],
        port(&report, INGRESS, 8443)["config"]
    );
    assert_eq!(
        plugins[3]["spec"]["selector"]["matchLabels"]["istio"],
        "internal-gateway"
    );

    // Gateway API: the Gateway's pods, in the Gateway's namespace.
    let r = run(&[&fixture("gateway-api.yaml"), "--wasmplugin", "--json"]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let p = &report["wasmplugins"][0];
    assert_eq!(p["metadata"]["namespace"], "shop");
    assert_eq!(
        p["spec"]["selector"]["matchLabels"]["gateway.networking.k8s.io/gateway-name"],
        "web"
    );
}

#[test]
fn stdin_and_several_inputs() {
    let json = std::fs::read_to_string(fixture("distinct.json")).unwrap();
    let r = run_with_stdin(&["--json", "-", &fixture("passthrough.yaml")], &json);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["summary"]["istio_gateways"], 4);
}

#[test]
fn malformed_input_exits_2_naming_document_and_field() {
    let cases = [
        (
            "bad-port.yaml",
            "document 2 (Gateway default/broken): field `spec.servers[0].port.number`",
        ),
        ("bad-syntax.yaml", "document 1: invalid YAML"),
        (
            "missing-class.json",
            "items[0] (Gateway default/g): field `spec`: missing field `gatewayClassName`",
        ),
        ("does-not-exist.yaml", "does-not-exist.yaml"),
    ];
    for (file, expected) in cases {
        let r = run(&[&fixture(file)]);
        assert_eq!(r.code, 2, "{file}: {}", r.stdout);
        assert!(r.stderr.contains(expected), "{file}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{file}: nothing on stdout");
    }
    let r = run_with_stdin(&["-"], "[1, 2]");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected a Kubernetes object"));
    let r = run(&[&fixture("incident.yaml"), "--cert", "nope"]);
    assert_eq!(r.code, 2);
    let r = run(&[
        &fixture("incident.yaml"),
        "--cert",
        &format!("ns/x={}", fixture("incident.yaml")),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no PEM block"), "{}", r.stderr);
    let r = run(&[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no input"));
}

#[test]
fn help_and_version() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("EXIT STATUS"));
    assert!(r.stdout.contains("--wasmplugin"));
    let r = run(&["-V"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("sni-guard-audit "));
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn istio_1_26_gets_fail_close() {
    let r = run(&[
        &fixture("incident.yaml"),
        "--wasmplugin",
        "--istio-release",
        "1.26",
    ]);
    let docs = yaml_docs(&r.stdout);
    assert_eq!(docs[0]["spec"]["failStrategy"], "FAIL_CLOSE");
}

#[test]
fn merge_writes_one_gateway_per_shared_certificate_and_falls_back_where_it_cannot() {
    let r = run(&[&fixture("merge.yaml"), "--merge"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let docs = yaml_docs(&r.stdout);
    assert_eq!(docs.len(), 2, "{}", r.stdout);
    let gw = &docs[0];
    assert_eq!(gw["kind"], "Gateway");
    assert_eq!(gw["metadata"]["namespace"], "istio-system");
    assert_eq!(gw["spec"]["selector"]["istio"], "ingress");
    let servers = gw["spec"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(
        servers[0]["hosts"],
        serde_json::json!(["team-a/a.example.com", "b.example.com"])
    );
    assert_eq!(servers[0]["tls"]["minProtocolVersion"], "TLSV1_2");
    assert!(r
        .stderr
        .contains("remove servers[0] of Gateway team-a/gateway-a"));
    assert!(r
        .stderr
        .contains("VirtualService team-a/a: add `istio-system/merged-wildcard-example-com-443`"));
    assert!(r.stderr.contains("VirtualService team-b/b: add"));
    // The internal gateway's servers differ in TLS mode: no merge, the filter instead.
    assert!(r
        .stderr
        .contains("NO MERGE istio:istio=internal  port 443: different TLS settings"));
    let plugin = &docs[1];
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"]["istio"],
        "internal"
    );
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_RELOAD");

    let report = report(&[&fixture("merge.yaml"), "--merge"], 1);
    assert_eq!(report["merges"].as_array().unwrap().len(), 1);
    assert_eq!(report["merge_refusals"][0]["port"], 443);
    assert_eq!(report["wasmplugins"].as_array().unwrap().len(), 1);
}
