//! The naive reference model of the listener matcher, written straight from the rules and shared
//! by the property tests (`tests/policy_properties.rs`, `tests/prop_hostile.rs`) and the fuzz
//! target (`fuzz/fuzz_targets/matcher.rs`): one statement of what the compiled matcher must do.
//!
//! (A directory module, so cargo does not build it as a test crate of its own.)

/// The listener a normalised name belongs to: scan every `(listener, pattern)`, keep the most
/// specific match. An exact name is most specific, then the wildcard with the longest suffix
/// (`*.suffix` covers one or more whole labels in front of the suffix, never the suffix
/// itself), then the catch-all `*`. Patterns are written as in the configuration.
pub fn listener_of<I, P>(patterns: I, name: &str) -> Option<u32>
where
    I: IntoIterator<Item = (u32, P)>,
    P: AsRef<str>,
{
    let mut best: Option<(usize, u32)> = None; // (specificity, listener)
    for (listener, pattern) in patterns {
        let pattern = pattern.as_ref();
        let specificity = if pattern == "*" {
            Some(0)
        } else if let Some(suffix) = pattern.strip_prefix("*.") {
            let dotted = format!(".{suffix}");
            (name.len() > dotted.len() && name.ends_with(&dotted)).then_some(1 + suffix.len())
        } else {
            (pattern == name).then_some(usize::MAX)
        };
        if let Some(s) = specificity {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, listener));
            }
        }
    }
    best.map(|(_, listener)| listener)
}

/// [`listener_of`] over listeners given as lists of patterns, listener ids being list indexes.
pub fn listener_of_groups<G: AsRef<[String]>>(groups: &[G], name: &str) -> Option<u32> {
    let patterns = groups.iter().enumerate().flat_map(|(i, g)| {
        g.as_ref()
            .iter()
            .map(move |p| (u32::try_from(i).unwrap_or(u32::MAX), p))
    });
    listener_of(patterns, name)
}
