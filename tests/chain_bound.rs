//! Property test of the chain-bound form (`this_listener`): the filter on the filter chain that
//! Envoy selects for a connection's SNI decides every request exactly as the SNI-based filter
//! does, while reading the SNI only where it must.
//!
//! Envoy's selection is modelled here from its filter chain manager
//! (`source/common/listener_manager/filter_chain_manager_impl.cc`,
//! `findFilterChainForServerName`, Envoy 1.36–1.40): the exact server name first, then `*.`
//! plus each parent suffix of the SNI, longest first (never the apex, and a trailing dot is not
//! stripped), then the chain without `server_names`; no match, no connection. Each listener of the
//! configuration is one chain; the catch-all listener is the chain without `server_names`.

// proptest does not build for wasm32-unknown-unknown; these run natively.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code: a panic is a failure report.

use std::cell::Cell;
use std::collections::HashSet;

mod strategies;

use proptest::prelude::*;
use serde_json::json;
use sni_guard::config;
use sni_guard::policy::{MissingSni, Pass, Policy, Tls, Verdict};
use strategies::{mode, name};

/// The `server_names` of one chain: exact names and wildcards.
fn server_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => name(), 2 => name().prop_map(|n| format!("*.{n}"))]
}

/// Chains with distinct server names, and where the chain without names goes (if any).
fn chains() -> impl Strategy<Value = (Vec<Vec<String>>, Option<usize>)> {
    (
        prop::collection::vec(prop::collection::vec(server_name(), 1..=3), 1..=4),
        prop::option::of(0usize..=4),
    )
        .prop_map(|(groups, default_at)| {
            let mut seen = HashSet::new();
            let mut groups: Vec<Vec<String>> = groups
                .into_iter()
                .map(|g| g.into_iter().filter(|p| seen.insert(p.clone())).collect())
                .filter(|g: &Vec<String>| !g.is_empty())
                .collect();
            let default_at = default_at.map(|i| i.min(groups.len()));
            if let Some(i) = default_at {
                groups.insert(i, Vec::new());
            }
            (groups, default_at)
        })
}

/// The SNI as Envoy reports it (lowercase): absent, empty, a name, or a name with a trailing dot.
fn sni() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        6 => name().prop_map(Some),
        2 => name().prop_map(|n| Some(format!("{n}."))),
    ]
}

/// An authority: names with ports, case and trailing dots, and some that are no valid host.
fn authority() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => name().prop_map(Some),
        1 => name().prop_map(|n| Some(format!("{}.:443", n.to_ascii_uppercase()))),
        1 => prop::sample::select(vec!["", "a b", "[::1]:443", "a..b", "a.com:x"])
            .prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
    ]
}

/// The chain Envoy selects for `sni` (see the module comment); `None`: no chain, no connection.
fn envoy_selects(chains: &[Vec<String>], sni: Option<&str>) -> Option<usize> {
    let sni = sni.unwrap_or("");
    let has = |server_name: &str| {
        chains
            .iter()
            .position(|c| c.iter().any(|n| n == server_name))
    };
    if let Some(i) = has(sni) {
        return Some(i);
    }
    let mut pos = sni.get(1..).and_then(|s| s.find('.')).map(|p| p + 1);
    while let Some(p) = pos.filter(|&p| p + 1 < sni.len()) {
        if let Some(i) = has(&format!("*{}", &sni[p..])) {
            return Some(i);
        }
        pos = sni[p + 1..].find('.').map(|q| p + 1 + q);
    }
    chains.iter().position(Vec::is_empty)
}

fn configuration(
    chains: &[Vec<String>],
    modes: &[Option<&str>],
    missing_sni: &str,
    this: Option<usize>,
) -> Policy {
    let listeners: Vec<_> = chains
        .iter()
        .enumerate()
        .map(|(i, hostnames)| {
            let mut l = json!({"name": format!("chain-{i}"), "hostnames": hostnames});
            if let Some(m) = modes.get(i).copied().flatten() {
                l["mode"] = json!(m);
            }
            l
        })
        .collect();
    let mut doc = json!({"listeners": listeners, "missing_sni": missing_sni});
    if let Some(i) = this {
        doc["this_listener"] = json!(format!("chain-{i}"));
    }
    config::parse(doc.to_string().as_bytes()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// For every SNI and authority: the chain-bound filter of the chain Envoy selects decides as
    /// the SNI-based filter does (verdict and mode); on a named chain it reads the SNI only for a
    /// refusal, and it reads the authority at most once.
    #[test]
    fn chain_bound_decides_as_sni_based(
        (chains, default_at) in chains(),
        modes in prop::collection::vec(mode(), 5),
        reject in any::<bool>(),
        sni in sni(),
        authority in authority(),
    ) {
        let missing_sni = if reject { "reject" } else { "allow" };
        // A configuration with only the catch-all chain is refused (no protection): not generated.
        prop_assume!(chains.iter().any(|c| !c.is_empty()) || reject);
        let Some(chain) = envoy_selects(&chains, sni.as_deref()) else {
            // Envoy closes the connection: no request reaches any filter.
            return Ok(());
        };
        let sni_based = configuration(&chains, &modes, missing_sni, None);
        let bound = configuration(&chains, &modes, missing_sni, Some(chain));
        let expected = sni_based.judge(sni.as_deref().map(str::as_bytes), Tls, || authority.clone());

        let sni_reads = Cell::new(0);
        let authority_reads = Cell::new(0);
        let (decision, read) = bound.judge_chain(
            || { sni_reads.set(sni_reads.get() + 1); sni.clone() },
            Tls,
            || { authority_reads.set(authority_reads.get() + 1); authority.clone() },
        );
        prop_assert_eq!(decision, expected);
        prop_assert!(sni_reads.get() <= 1 && authority_reads.get() <= 1);
        prop_assert_eq!(read.is_some(), sni_reads.get() == 1);
        // On a named chain (under `missing_sni: allow`) a pass reads no SNI.
        let named_chain = default_at != Some(chain);
        if named_chain && bound.missing_sni == MissingSni::Allow
            && matches!(decision.verdict, Verdict::Pass(Pass::SameListener | Pass::UnknownHost))
        {
            prop_assert_eq!(sni_reads.get(), 0, "a pass on a named chain needs no SNI");
        }
    }
}
