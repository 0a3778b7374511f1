//! Generators shared by the property tests that build configurations as JSON: names from a
//! small alphabet (so that generated names collide often) and per-listener modes.

use proptest::prelude::*;

pub fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "ab", "w"]).prop_map(str::to_owned)
}

/// A name of one to three labels.
pub fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..=3).prop_map(|l| l.join("."))
}

/// A listener's `mode`, or none (the top-level mode).
pub fn mode() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![None, Some("enforce"), Some("dry_run"), Some("off")])
}
