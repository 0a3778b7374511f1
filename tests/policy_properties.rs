//! Property tests of the listener matcher and the decision (listener-isolation policy).
//!
//! A naive reference matcher, written straight from the rules (scan every pattern, keep the most
//! specific), is compared with the compiled hash-map matcher on generated listener sets.

// proptest does not build for wasm32-unknown-unknown; these run natively.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code: a panic is a failure report.

use proptest::prelude::*;
use sni_guard::listeners::{ListenerId, ListenerSet, Pattern};
use sni_guard::name::Name;
use sni_guard::policy::{MissingSni, Mode, Pass, Policy, Protocols, Reason, Scope, Verdict};

/// A short label from a small alphabet, so generated names collide often.
fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "ab", "x-y", "w", "0"]).prop_map(str::to_owned)
}

/// A name of one to four labels.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..=4).prop_map(|l| l.join("."))
}

/// A hostname pattern: exact, wildcard or catch-all.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        3 => name().prop_map(|n| format!("*.{n}")),
        1 => Just("*".to_owned()),
    ]
}

/// Listener sets as lists of pattern lists, with duplicates across listeners removed (the
/// configuration refuses those) so that every generated set is valid.
fn listener_groups() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec(pattern(), 1..=3), 1..=6).prop_map(|groups| {
        let mut seen = std::collections::HashSet::new();
        groups
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .filter(|p| seen.insert(p.clone()))
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect()
    })
}

fn compile(groups: &[Vec<String>]) -> ListenerSet {
    let mut set = ListenerSet::new();
    for (i, g) in groups.iter().enumerate() {
        for p in g {
            set.insert(ListenerId(i as u32), Pattern::parse(p).unwrap())
                .unwrap();
        }
    }
    set
}

/// The rules, applied naively: the most specific matching pattern wins (exact, then the longest
/// wildcard suffix, then the catch-all).
fn reference(groups: &[Vec<String>], name: &str) -> Option<u32> {
    let mut best: Option<(usize, u32)> = None; // (specificity, listener)
    for (i, g) in groups.iter().enumerate() {
        for p in g {
            let specificity = if p == "*" {
                Some(0)
            } else if let Some(suffix) = p.strip_prefix("*.") {
                let matches = name.len() > suffix.len() + 1
                    && name.ends_with(suffix)
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.';
                matches.then_some(1 + suffix.len())
            } else {
                (p == name).then_some(usize::MAX)
            };
            if let Some(s) = specificity {
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i as u32));
                }
            }
        }
    }
    best.map(|(_, l)| l)
}

fn policy(groups: &[Vec<String>]) -> Policy {
    Policy {
        mode: Mode::Enforce,
        scope: Scope::Listeners(compile(groups)),
        missing_sni: MissingSni::Allow,
        protocols: Protocols::ALL,
        listener_modes: Vec::new(),
    }
}

fn decide(p: &Policy, sni: Option<&str>, host: &str) -> Verdict {
    p.decide(sni.map(str::as_bytes), || Some(host))
}

/// Spellings of the same host that must decide alike.
fn variants(host: &str) -> Vec<String> {
    vec![
        host.to_owned(),
        host.to_ascii_uppercase(),
        format!("{host}."),
        format!("{host}:443"),
        format!("{}.:8443", host.to_ascii_uppercase()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_the_reference(groups in listener_groups(), n in name()) {
        let set = compile(&groups);
        let got = set.listener_of(&Name::from_dns(n.as_bytes()).unwrap()).map(|l| l.0);
        prop_assert_eq!(got, reference(&groups, &n));
    }

    #[test]
    fn a_wildcard_never_matches_its_apex(suffix in name()) {
        let set = compile(&[vec![format!("*.{suffix}")]]);
        prop_assert_eq!(set.listener_of(&Name::from_dns(suffix.as_bytes()).unwrap()), None);
        let child = format!("x.{suffix}");
        prop_assert_eq!(
            set.listener_of(&Name::from_dns(child.as_bytes()).unwrap()),
            Some(ListenerId(0))
        );
    }

    #[test]
    fn exact_beats_wildcard_beats_catch_all(n in name()) {
        let base = format!("{n}.zz");
        let host = format!("h.{base}");
        let set = compile(&[
            vec!["*".to_owned()],
            vec!["*.zz".to_owned()],
            vec![format!("*.{base}")],
            vec![host.clone()],
        ]);
        let of = |s: &str| set.listener_of(&Name::from_dns(s.as_bytes()).unwrap()).map(|l| l.0);
        prop_assert_eq!(of(&host), Some(3));
        prop_assert_eq!(of(&format!("other.{base}")), Some(2));
        prop_assert_eq!(of(&format!("x.y.{base}")), Some(2));
        prop_assert_eq!(of("q.zz"), Some(1));
        prop_assert_eq!(of("unrelated.invalid"), Some(0));
    }

    #[test]
    fn unrelated_listeners_never_change_a_decision(
        groups in listener_groups(), sni in name(), host in name(), extra in 1usize..200,
    ) {
        let before = decide(&policy(&groups), Some(&sni), &host);
        // Names under `.unrelated` cannot be generated by `name()`: they cover nothing here.
        let mut bigger = groups.clone();
        for i in 0..extra {
            bigger.push(vec![format!("n{i}.unrelated"), format!("*.w{i}.unrelated")]);
        }
        prop_assert_eq!(decide(&policy(&bigger), Some(&sni), &host), before);
    }

    #[test]
    fn spelling_variants_decide_alike(groups in listener_groups(), sni in name(), host in name()) {
        let p = policy(&groups);
        let want = decide(&p, Some(&sni), &host);
        for v in variants(&host) {
            prop_assert_eq!(decide(&p, Some(&sni), &v), want, "host variant {}", v);
        }
        // Not `{sni}.`: a trailing-dot SNI matches no listener (see Name::from_sni).
        let upper = sni.to_ascii_uppercase();
        prop_assert_eq!(decide(&p, Some(&upper), &host), want, "sni variant {}", upper);
        let strict = Policy::default();
        let want = decide(&strict, Some(&sni), &host);
        prop_assert_eq!(want == Verdict::Pass(Pass::SameListener), sni == host);
        for v in variants(&host) {
            prop_assert_eq!(decide(&strict, Some(&sni), &v), want, "strict host variant {}", v);
        }
    }

    #[test]
    fn enforce_passes_only_same_listener_or_unknown_host(
        groups in listener_groups(), sni in name(), host in name(),
    ) {
        let verdict = decide(&policy(&groups), Some(&sni), &host);
        let (s, h) = (reference(&groups, &sni), reference(&groups, &host));
        let want = match h {
            None => Verdict::Pass(Pass::UnknownHost),
            Some(h) if Some(h) == s => Verdict::Pass(Pass::SameListener),
            Some(_) => Verdict::Misdirected(Reason::ListenerMismatch),
        };
        prop_assert_eq!(verdict, want);
    }

    #[test]
    fn decide_never_panics_on_arbitrary_bytes(
        groups in listener_groups(),
        sni in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        host in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        reject in any::<bool>(),
    ) {
        for mut p in [policy(&groups), Policy::default()] {
            if reject {
                p.missing_sni = MissingSni::Reject;
            }
            let _ = p.decide(sni.as_deref(), || host.clone());
        }
    }
}
