//! Property tests with hostile input: every byte of an SNI or an authority is attacker-chosen.
//!
//! The decision is compared with an independent model written from the specification (a list of
//! listeners scanned naively, a naive normaliser), on authorities built from a grammar of the
//! spellings that have bypassed this check in other proxies: case, trailing dots, ports (valid,
//! empty, doubled, non-numeric), userinfo, percent-encoding, lists, whitespace, IPv6 literals,
//! non-ASCII. Nothing may panic, and no host of another listener may ever pass in enforce mode.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // test code

mod reference;

use proptest::prelude::*;
use sni_guard::config;
use sni_guard::listeners::{ListenerId, ListenerSet, Pattern};
use sni_guard::name::{Name, MAX_NAME_LEN};
use sni_guard::policy::{MissingSni, Mode, Pass, Policy, Protocols, Reason, Scope, Verdict};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- the model ---------------------------------------------------------------------------------

/// A listener set as the specification states it: listeners, each a list of lowercase patterns.
#[derive(Clone, Debug)]
struct Model {
    listeners: Vec<Vec<String>>,
}

impl Model {
    /// The listener a (normalised) name belongs to, by the shared reference model.
    fn listener_of(&self, name: &str) -> Option<usize> {
        reference::listener_of_groups(&self.listeners, name).map(|l| l as usize)
    }

    fn compile(&self) -> ListenerSet {
        let mut set = ListenerSet::new();
        for (i, patterns) in self.listeners.iter().enumerate() {
            for p in patterns {
                set.insert(ListenerId(i as u32), Pattern::parse(p).unwrap())
                    .unwrap();
            }
        }
        set
    }

    fn json(&self) -> String {
        let listeners: Vec<String> = self
            .listeners
            .iter()
            .map(|ps| format!(r#"{{"hostnames": {}}}"#, serde_json::json!(ps)))
            .collect();
        format!(r#"{{"listeners": [{}]}}"#, listeners.join(","))
    }
}

/// The naive normaliser of the specification, for authorities the grammar builds: drop a
/// `:digits` port (1-5 digits, at most 65535), lowercase, drop one trailing dot. `None` for
/// anything that is not plainly `dns-name[:port]` made of letters, digits, `-`, `_` and dots.
fn naive_host(authority: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(authority).ok()?;
    let host = match s.rsplit_once(':') {
        Some((h, port)) => {
            let ok = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().ok()? <= 65535;
            if !ok {
                return None;
            }
            h
        }
        None => s,
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
    let labels_ok = !host.is_empty()
        && host.len() <= MAX_NAME_LEN
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    labels_ok.then_some(host)
}

// ---- generators --------------------------------------------------------------------------------

/// Labels from a small alphabet so that names collide, listeners overlap and wildcards nest.
fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "x-y", "w", "0", "_s", "xn--bcher-kva"])
        .prop_map(str::to_owned)
}

fn dns_name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..=4).prop_map(|l| l.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => dns_name(),
        3 => dns_name().prop_map(|n| format!("*.{n}")),
        1 => Just("*".to_owned()),
    ]
}

/// A valid listener set (a pattern claimed by two listeners is refused by the configuration, so
/// later claims are dropped).
fn model() -> impl Strategy<Value = Model> {
    prop::collection::vec(prop::collection::vec(pattern(), 1..=4), 1..=6).prop_map(|groups| {
        let mut seen = std::collections::HashSet::new();
        let listeners = groups
            .into_iter()
            .map(|g| g.into_iter().filter(|p| seen.insert(p.clone())).collect())
            .filter(|g: &Vec<String>| !g.is_empty())
            .collect();
        Model { listeners }
    })
}

/// Randomly upper-cases letters.
fn mixed_case(s: String) -> impl Strategy<Value = String> {
    let n = s.len();
    prop::collection::vec(any::<bool>(), n).prop_map(move |up| {
        s.chars()
            .zip(up)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// A name spelled the ways attackers spell it. Some spellings are harmless variants of the name
/// (case, port, one trailing dot), the others must never be taken for it.
fn hostile_authority() -> impl Strategy<Value = Vec<u8>> {
    let decoration = prop::sample::select(vec![
        "",
        "",
        "",
        ".",
        "..",
        ":443",
        ":8443",
        ":",
        ":abc",
        ":443:443",
        ":65535",
        ":65536",
        ":0443",
        ":000443",
        ".:443",
        " ",
        "\t",
        "\0",
        ",b.example",
        "/",
        "?x",
        "#f",
        "%2e",
        "@",
        ":443@evil.test",
        "\u{0130}",
        "\u{212a}",
        ".\u{3002}",
    ]);
    let prefix = prop::sample::select(vec![
        "", "", "", "user@", "a:b@", " ", ".", "*.", "[", "%61", "\u{fc}", "x.",
    ]);
    (dns_name().prop_flat_map(mixed_case), prefix, decoration)
        .prop_map(|(n, p, d)| format!("{p}{n}{d}").into_bytes())
}

/// Arbitrary bytes, biased towards the characters that structure an authority.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"abAB.:[]@%,-_0123456789*".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..80)
}

fn long_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(b"a.:[]0f".to_vec()), 200..600),
        (1usize..400).prop_map(|n| {
            let mut v = b"[".to_vec();
            v.extend(std::iter::repeat_n(b':', n));
            v.push(b']');
            v
        }),
    ]
}

fn enforce(scope: Scope, missing_sni: MissingSni) -> Policy {
    Policy {
        mode: Mode::Enforce,
        scope,
        missing_sni,
        protocols: Protocols::ALL,
        ..Policy::default()
    }
}

// ---- properties --------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    /// Parsing never panics, and whatever it accepts is a normal form: at most 253 bytes, no
    /// upper case, no port, no trailing dot, and parsing it again gives it back unchanged.
    #[test]
    fn names_parse_to_a_fixed_point(raw in prop_oneof![hostile_bytes(), hostile_authority(), long_bytes()]) {
        for parsed in [Name::from_authority(&raw), Name::from_sni(&raw), Name::from_dns(&raw)] {
            let Ok(name) = parsed else { continue };
            let s = name.as_str();
            prop_assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN, "{:?} -> {:?}", raw, s);
            prop_assert_eq!(s.as_bytes(), name.as_bytes());
            prop_assert!(!s.bytes().any(|b| b.is_ascii_uppercase()) && !s.ends_with('.'));
            let again = Name::from_authority(s.as_bytes());
            prop_assert_eq!(again, Ok(name), "{:?} -> {:?} does not parse back", raw, s);
        }
    }

    /// The matcher and the decision never panic, whatever the names and whatever the listeners.
    #[test]
    fn decision_never_panics(
        m in model(),
        sni in prop::option::of(prop_oneof![hostile_bytes(), hostile_authority(), long_bytes()]),
        host in prop::option::of(prop_oneof![hostile_bytes(), hostile_authority(), long_bytes()]),
        reject in any::<bool>(), dry in any::<bool>(),
    ) {
        let missing = if reject { MissingSni::Reject } else { MissingSni::Allow };
        for scope in [Scope::Strict, Scope::Listeners(m.compile()), Scope::Listeners(ListenerSet::new())] {
            let mut p = enforce(scope, missing);
            if dry { p.mode = Mode::DryRun; }
            let _ = p.decide(sni.as_deref(), || host.clone());
            if let Some(h) = host.as_deref().and_then(|h| Name::from_authority(h).ok()) {
                if let Scope::Listeners(set) = &p.scope { let _ = set.listener_of(&h); }
            }
        }
    }

    /// The compiled matcher is the specification's naive scan, on names in any spelling.
    #[test]
    fn matcher_equals_the_naive_model(m in model(), n in dns_name().prop_flat_map(mixed_case)) {
        let set = m.compile();
        let got = set.listener_of(&Name::from_dns(n.as_bytes()).unwrap()).map(|l| l.0 as usize);
        prop_assert_eq!(got, m.listener_of(&n.to_ascii_lowercase()));
    }

    /// Enforce mode, SNI present: a request passes only if the model says the host belongs to
    /// the SNI's listener, or to no listener at all. Anything the naive normaliser would not
    /// accept as `host[:port]` is answered 421.
    #[test]
    fn enforce_lets_no_other_listener_through(
        m in model(), sni in dns_name().prop_flat_map(mixed_case),
        sni_dot in any::<bool>(), host in hostile_authority(),
    ) {
        let sni = if sni_dot { format!("{sni}.") } else { sni };
        let p = enforce(Scope::Listeners(m.compile()), MissingSni::Allow);
        let verdict = p.decide(Some(sni.as_bytes()), || Some(host.clone()));
        // A trailing-dot SNI matches no Envoy filter chain by name: it belongs to no listener.
        let sni_l = if sni_dot { None } else { m.listener_of(&naive_host(sni.as_bytes()).unwrap()) };
        let want = match naive_host(&host) {
            None => Verdict::Misdirected(Reason::InvalidAuthority),
            Some(h) => match m.listener_of(&h) {
                None => Verdict::Pass(Pass::UnknownHost),
                Some(l) if Some(l) == sni_l => Verdict::Pass(Pass::SameListener),
                Some(_) => Verdict::Misdirected(Reason::ListenerMismatch),
            },
        };
        prop_assert_eq!(verdict, want, "sni {:?} host {:?}", sni, String::from_utf8_lossy(&host));
        // Strict scope: equality of the naive normal forms, nothing else.
        let strict = enforce(Scope::Strict, MissingSni::Allow)
            .decide(Some(sni.as_bytes()), || Some(host.clone()));
        let same = !sni_dot && naive_host(&host).is_some_and(|h| Some(h) == naive_host(sni.as_bytes()));
        prop_assert_eq!(strict == Verdict::Pass(Pass::SameListener), same);
    }

    /// Arbitrary bytes on both sides: whenever enforce mode lets a request through with an SNI,
    /// the authority was a plain `host[:port]` whose host the model puts in the SNI's listener
    /// (or in none).
    #[test]
    fn enforce_pass_implies_model_pass_on_arbitrary_bytes(
        m in model(), sni in hostile_bytes(), host in hostile_bytes(),
    ) {
        let p = enforce(Scope::Listeners(m.compile()), MissingSni::Reject);
        let verdict = p.decide(Some(&sni), || Some(host.clone()));
        if let Verdict::Pass(pass) = verdict {
            // IPv6 literals are outside the naive grammar; they can only reach a catch-all.
            if host.first() == Some(&b'[') {
                let any = m.listeners.iter().position(|l| l.iter().any(|p| p == "*"));
                prop_assert!(pass == Pass::UnknownHost || any.is_some());
                return Ok(());
            }
            let h = naive_host(&host);
            prop_assert!(h.is_some(), "passed an authority the spec refuses: {:?}", host);
            let hl = m.listener_of(&h.unwrap());
            match pass {
                Pass::UnknownHost => prop_assert_eq!(hl, None),
                Pass::SameListener => {
                    prop_assert!(sni.last() != Some(&b'.'), "trailing-dot SNI passed");
                    let sl = naive_host(&sni).and_then(|s| m.listener_of(&s));
                    prop_assert!(hl.is_some() && hl == sl);
                }
                Pass::NoSni => prop_assert!(sni.is_empty()),
            }
        }
    }

    /// `missing_sni: reject`: without SNI, only hosts of no listener pass.
    #[test]
    fn missing_sni_reject_passes_only_unknown_hosts(m in model(), host in hostile_authority()) {
        let p = enforce(Scope::Listeners(m.compile()), MissingSni::Reject);
        for sni in [None, Some(&b""[..])] {
            let verdict = p.decide(sni, || Some(host.clone()));
            let want = match naive_host(&host) {
                None => Verdict::Misdirected(Reason::InvalidAuthority),
                Some(h) if m.listener_of(&h).is_none() => Verdict::Pass(Pass::UnknownHost),
                Some(_) => Verdict::Misdirected(Reason::MissingSni),
            };
            prop_assert_eq!(verdict, want);
        }
    }

    /// An exact host is never matched by a sibling's wildcard, whatever else is configured:
    /// with `*.s` in one listener and `h.s` in another, each side's SNI refuses the other's host.
    #[test]
    fn exact_host_is_not_its_sibling_wildcards(m in model(), s in dns_name(), h in label(), o in label()) {
        prop_assume!(h != o);
        let (exact, other) = (format!("{h}.{s}"), format!("{o}.{s}"));
        let mut listeners: Vec<Vec<String>> = m.listeners.iter().map(|l| {
            l.iter().filter(|p| **p != exact && **p != other && **p != format!("*.{s}")).cloned().collect()
        }).filter(|l: &Vec<String>| !l.is_empty()).collect();
        listeners.push(vec![format!("*.{s}")]);
        listeners.push(vec![exact.clone()]);
        let m = Model { listeners };
        let p = enforce(Scope::Listeners(m.compile()), MissingSni::Allow);
        let mismatch = Verdict::Misdirected(Reason::ListenerMismatch);
        prop_assert_eq!(p.decide(Some(other.as_bytes()), || Some(exact.as_str())), mismatch);
        prop_assert_eq!(p.decide(Some(exact.as_bytes()), || Some(other.as_str())), mismatch);
        prop_assert_eq!(p.decide(Some(exact.to_ascii_uppercase().as_bytes()), || Some(format!("{exact}.:443"))),
            Verdict::Pass(Pass::SameListener));
    }

    /// Dry run reaches the same verdict as enforce (it only acts differently on it).
    #[test]
    fn dry_run_decides_like_enforce(m in model(), sni in prop::option::of(hostile_bytes()), host in hostile_authority()) {
        let mut p = enforce(Scope::Listeners(m.compile()), MissingSni::Reject);
        let a = p.decide(sni.as_deref(), || Some(host.clone()));
        p.mode = Mode::DryRun;
        prop_assert_eq!(p.decide(sni.as_deref(), || Some(host.clone())), a);
    }

    /// The configuration text of a model compiles into the same matcher.
    #[test]
    fn config_json_compiles_to_the_model(m in model(), n in dns_name()) {
        let parsed = config::parse(m.json().as_bytes());
        // A lone catch-all protects nothing and is refused (see `config`).
        if m.listeners == [vec!["*".to_owned()]] {
            prop_assert_eq!(parsed.unwrap_err().field, "listeners");
            return Ok(());
        }
        let policy = parsed.unwrap();
        let Scope::Listeners(set) = policy.scope else { panic!("expected listeners") };
        let got = set.listener_of(&Name::from_dns(n.as_bytes()).unwrap()).map(|l| l.0 as usize);
        prop_assert_eq!(got, m.listener_of(&n));
    }
}

/// JSON-shaped values, nested, with the configuration's own keys mixed in.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = prop::sample::select(vec![
        "mode",
        "listeners",
        "missing_sni",
        "protocols",
        "name",
        "hostnames",
        "x",
        "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "enforce",
            "dry_run",
            "allow",
            "reject",
            "HTTP/2",
            "*",
            "*.a.b",
            "a.b",
            "",
            "a..b",
            "*.*",
            "A.B.",
            "\u{fc}.de",
            "[::1]",
            "a.b:443",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(cases(512))]

    /// Configuration parsing never panics on arbitrary bytes, and an error always gives a reason.
    #[test]
    fn config_parse_never_panics_on_bytes(raw in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(prop::sample::select(b"{}[]\":,ablstn*. \\u0".to_vec()), 0..200),
    ]) {
        if let Err(e) = config::parse(&raw) {
            prop_assert!(!e.reason.is_empty());
        }
    }

    /// ... nor on any JSON document; one that compiles decides without panicking either.
    #[test]
    fn config_parse_never_panics_on_json(v in json_value(), host in hostile_authority()) {
        let text = serde_json::to_vec(&v).unwrap();
        match config::parse(&text) {
            Ok(p) => { let _ = p.decide(Some(b"a.b"), || Some(host)); }
            // The field may be an empty key (`{"": 1}`); the reason is always there.
            Err(e) => prop_assert!(!e.reason.is_empty()),
        }
    }
}
