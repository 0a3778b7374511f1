//! The listener matcher and the decision against a naive scan of the patterns.
//!
//! Input, one item a line: the SNI, the authority, then hostname patterns; an empty line starts
//! the next listener. Patterns that do not parse, or are claimed by an earlier listener, are
//! skipped (the configuration would refuse them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sni_guard::listeners::{ListenerId, ListenerSet, Pattern};
use sni_guard::name::Name;
use sni_guard::policy::{MissingSni, Mode, Pass, Policy, Protocols, Reason, Scope, Verdict};

/// The shared naive reference model of the matcher (tests/reference).
#[path = "../../tests/reference/mod.rs"]
mod reference;

/// Most specific match by a scan of every (listener, pattern): the reference model.
fn naive(patterns: &[(u32, Pattern)], name: &str) -> Option<u32> {
    reference::listener_of(patterns.iter().map(|(id, p)| (*id, p.to_string())), name)
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let (Some(sni), Some(host)) = (lines.next(), lines.next()) else {
        return;
    };
    let mut set = ListenerSet::new();
    let mut kept = Vec::new();
    let mut id = 0u32;
    for line in lines {
        if line.is_empty() {
            id += 1;
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(pattern) = Pattern::parse(text) else {
            continue;
        };
        if set.insert(ListenerId(id), pattern.clone()).is_ok() {
            kept.push((id, pattern));
        }
    }
    let host_name = Name::from_authority(host).ok();
    if let Some(h) = &host_name {
        assert_eq!(set.listener_of(h).map(|l| l.0), naive(&kept, h.as_str()));
    }
    let sni_listener = Name::from_sni(sni)
        .ok()
        .and_then(|s| naive(&kept, s.as_str()));
    for missing_sni in [MissingSni::Allow, MissingSni::Reject] {
        let policy = Policy {
            mode: Mode::Enforce,
            scope: Scope::Listeners(set.clone()),
            missing_sni,
            protocols: Protocols::ALL,
            ..Policy::default()
        };
        let verdict = policy.decide(Some(sni), || Some(host));
        let host_listener = host_name.as_ref().and_then(|h| naive(&kept, h.as_str()));
        match verdict {
            Verdict::Pass(Pass::SameListener) => {
                assert!(host_listener.is_some() && host_listener == sni_listener)
            }
            Verdict::Pass(Pass::UnknownHost) => {
                assert!(host_name.is_some() && host_listener.is_none())
            }
            Verdict::Pass(Pass::NoSni) => {
                assert!(sni.is_empty() && missing_sni == MissingSni::Allow)
            }
            Verdict::Misdirected(Reason::InvalidAuthority) => assert!(host_name.is_none()),
            Verdict::Misdirected(_) => {
                assert!(
                    host_listener.is_some() && (sni.is_empty() || host_listener != sni_listener)
                )
            }
        }
        // Strict scope: pass only on equal normal forms.
        let strict = Policy {
            scope: Scope::Strict,
            ..policy
        };
        if strict.decide(Some(sni), || Some(host)) == Verdict::Pass(Pass::SameListener) {
            assert_eq!(Name::from_sni(sni).ok(), host_name);
        }
    }
});
