//! Property tests of what the filter does with a verdict: per-listener modes, the 400/421
//! split, and `missing_sni: reject` on TLS connections only. Configurations are generated as
//! JSON and compiled by the real parser; the listener a name belongs to is taken from the
//! compiled matcher itself (the matcher is checked against a reference model in
//! `policy_properties.rs` and `prop_hostile.rs`).

// proptest does not build for wasm32-unknown-unknown; these run natively.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code: a panic is a failure report.

use std::cell::Cell;

mod strategies;

use proptest::prelude::*;
use serde_json::json;
use sni_guard::config;
use sni_guard::name::Name;
use sni_guard::policy::{Mode, Outcome, Policy, Reason, Scope, Tls, Verdict};
use sni_guard::reply;
use strategies::{mode, name};

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        2 => name().prop_map(|n| format!("*.{n}")),
        1 => Just("*".to_owned()),
    ]
}

/// An authority: mostly names (with ports and case), sometimes something that is no
/// `host[:port]` at all.
fn authority() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => name(),
        2 => name().prop_map(|n| format!("{}:443", n.to_ascii_uppercase())),
        1 => (name(), name()).prop_map(|(a, b)| format!("{a},{b}")),
        1 => name().prop_map(|n| format!("user@{n}")),
        1 => name().prop_map(|n| format!("{n}:")),
        1 => Just(String::new()),
    ]
}

/// A configuration: listener groups (cross-listener duplicates dropped), a mode per listener,
/// a top-level mode and `missing_sni`. Compiles unless it is a lone catch-all under `allow`.
fn configuration() -> impl Strategy<Value = serde_json::Value> {
    let listener = (prop::collection::vec(pattern(), 1..=3), mode());
    (
        prop::collection::vec(listener, 1..=5),
        prop::sample::select(vec!["enforce", "dry_run"]),
        prop::sample::select(vec!["allow", "reject"]),
    )
        .prop_map(|(listeners, top, missing_sni)| {
            let mut seen = std::collections::HashSet::new();
            let listeners: Vec<_> = listeners
                .into_iter()
                .filter_map(|(patterns, mode)| {
                    let hostnames: Vec<_> = patterns
                        .into_iter()
                        .filter(|p| seen.insert(p.clone()))
                        .collect();
                    if hostnames.is_empty() {
                        return None;
                    }
                    let mut l = json!({ "hostnames": hostnames });
                    if let Some(m) = mode {
                        l["mode"] = json!(m);
                    }
                    Some(l)
                })
                .collect();
            json!({"mode": top, "missing_sni": missing_sni, "listeners": listeners})
        })
}

fn compile(config: &serde_json::Value) -> Option<Policy> {
    let policy = config::parse(config.to_string().as_bytes());
    let listeners = config["listeners"].as_array().unwrap();
    let lone_catch_all = listeners.len() == 1 && listeners[0]["hostnames"] == json!(["*"]);
    if lone_catch_all && config["missing_sni"] == "allow" {
        assert_eq!(policy.unwrap_err().field, "listeners");
        return None;
    }
    Some(policy.unwrap())
}

/// The mode the configuration gives listener `i` (its own, else the top-level one).
fn configured_mode(config: &serde_json::Value, listener: Option<u32>) -> Mode {
    let own = listener.and_then(|i| config["listeners"][i as usize]["mode"].as_str());
    match own.or(config["mode"].as_str()) {
        Some("dry_run") => Mode::DryRun,
        Some("off") => Mode::Off,
        _ => Mode::Enforce,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Modes decide what is done, never what is judged: the verdict equals the one of the same
    /// listeners with no mode anywhere.
    #[test]
    fn modes_never_change_the_verdict(c in configuration(), sni in name(), host in authority()) {
        let Some(p) = compile(&c) else { return Ok(()) };
        let plain = Policy { listener_modes: Vec::new(), mode: Mode::Enforce, ..p.clone() };
        let got = p.judge(Some(sni.as_bytes()), Tls, || Some(host.as_str()));
        prop_assert_eq!(got.verdict, plain.decide(Some(sni.as_bytes()), || Some(host.as_str())));
    }

    /// The mode is the host's listener's; for an authority that is no name, the SNI's
    /// listener's; otherwise the top-level one. `off` always passes.
    #[test]
    fn the_mode_is_the_listener_of_the_host(c in configuration(), sni in name(), host in authority()) {
        let Some(p) = compile(&c) else { return Ok(()) };
        let Scope::Listeners(set) = &p.scope else { unreachable!() };
        let d = p.judge(Some(sni.as_bytes()), Tls, || Some(host.as_str()));
        let listener_of = |raw: &[u8], parse: fn(&[u8]) -> Result<Name, _>| {
            parse(raw).ok().and_then(|n| set.listener_of(&n)).map(|l| l.0)
        };
        let host_listener = listener_of(host.as_bytes(), Name::from_authority);
        let sni_listener = listener_of(sni.as_bytes(), Name::from_sni);
        if let Verdict::Misdirected(reason) = d.verdict {
            let judged_for = match reason {
                Reason::InvalidAuthority => sni_listener,
                _ => host_listener,
            };
            prop_assert_eq!(d.mode, configured_mode(&c, judged_for));
        }
        if d.mode == Mode::Off {
            prop_assert_eq!(d.outcome(), Outcome::Pass);
        }
    }

    /// 400 exactly for an authority that is not a valid `host[:port]` (when a reply is sent);
    /// a valid name is never answered 400.
    #[test]
    fn status_400_iff_the_authority_is_invalid(c in configuration(), sni in name(), host in authority()) {
        let Some(p) = compile(&c) else { return Ok(()) };
        let d = p.judge(Some(sni.as_bytes()), Tls, || Some(host.as_str()));
        let valid = Name::from_authority(host.as_bytes()).is_ok();
        if let Outcome::Reply(reason) | Outcome::Observe(reason) = d.outcome() {
            prop_assert_eq!(reply::for_reason(reason).status == 400, !valid);
        }
        if !valid {
            prop_assert!(d.mode == Mode::Off || d.outcome() != Outcome::Pass);
        }
    }

    /// Without SNI: a plaintext connection always passes without its authority being read;
    /// the transport is asked once, only under `reject`, and never when there is an SNI.
    #[test]
    fn missing_sni_reject_is_for_tls_only(c in configuration(), sni in name(), host in authority()) {
        let Some(p) = compile(&c) else { return Ok(()) };
        let reject = c["missing_sni"] == "reject";
        let asked = Cell::new(0);
        let plaintext = || { asked.set(asked.get() + 1); false };
        let d = p.judge(None, plaintext, || -> Option<&str> { panic!("authority read") });
        prop_assert_eq!(d.outcome(), Outcome::Pass);
        prop_assert_eq!(asked.get(), u32::from(reject));
        let tls = || { asked.set(asked.get() + 1); true };
        asked.set(0);
        let with_sni = p.judge(Some(sni.as_bytes()), tls, || Some(host.as_str()));
        prop_assert_eq!(asked.get(), 0);
        prop_assert_eq!(with_sni, p.judge(Some(sni.as_bytes()), Tls, || Some(host.as_str())));
        // On TLS without SNI, `reject` refuses every host of some listener.
        let no_sni_tls = p.judge(None, Tls, || Some(host.as_str()));
        if reject && no_sni_tls.verdict != Verdict::Misdirected(Reason::InvalidAuthority) {
            let Scope::Listeners(set) = &p.scope else { unreachable!() };
            let known = Name::from_authority(host.as_bytes()).ok().and_then(|n| set.listener_of(&n));
            prop_assert_eq!(
                no_sni_tls.verdict == Verdict::Misdirected(Reason::MissingSni),
                known.is_some()
            );
        }
    }
}
