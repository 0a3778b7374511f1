//! Listener groups: which hostnames may share one connection.
//!
//! A listener (a Gateway API listener, or one Istio Gateway server) owns a set of hostname
//! patterns: exact names (`a.example.com`), wildcards (`*.example.com`, one or more labels in
//! front of the suffix, never the suffix itself) and the catch-all (`*`, or no hostnames at all).
//! A name belongs to the listener of its most specific matching pattern: exact beats any
//! wildcard, a longer wildcard suffix beats a shorter one, the catch-all comes last. This is the
//! precedence the Gateway API defines for listener hostnames.
//!
//! Lookups cost O(labels of the name): one hash probe for the exact name, then one per parent
//! suffix, longest first. The number of listeners does not enter into it.

use std::fmt;

use crate::name::{Name, NameError};

/// Index of a listener in the configuration's `listeners` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u32);

/// One hostname pattern of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: any name.
    CatchAll,
    /// `*.suffix`: any name with one or more labels in front of `suffix`.
    Wildcard(String),
    /// A full name.
    Exact(String),
}

/// Why a hostname pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// `*` somewhere other than as the whole leftmost label (`a.*.com`, `*a.com`, `**.com`).
    MisplacedWildcard,
    /// The name itself is malformed.
    Name(NameError),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::MisplacedWildcard => {
                f.write_str("`*` is only allowed as the whole leftmost label (`*.example.com`)")
            }
            PatternError::Name(NameError::InvalidCharacter) => f.write_str(
                "character not allowed in a hostname (use lowercase ASCII; write \
                 internationalised names in punycode, `xn--...`)",
            ),
            PatternError::Name(e) => e.fmt(f),
        }
    }
}

impl Pattern {
    /// Parses a configured hostname: `*`, `*.suffix` or a name. Case and one trailing dot are
    /// normalised as for requests, so a pattern and the names it should match compare equal.
    pub fn parse(raw: &str) -> Result<Pattern, PatternError> {
        if raw == "*" {
            return Ok(Pattern::CatchAll);
        }
        let (wildcard, rest) = match raw.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if rest.contains('*') {
            return Err(PatternError::MisplacedWildcard);
        }
        let name = Name::from_dns(rest.as_bytes()).map_err(PatternError::Name)?;
        let name = name.as_str().to_owned();
        Ok(if wildcard {
            Pattern::Wildcard(name)
        } else {
            Pattern::Exact(name)
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::CatchAll => f.write_str("*"),
            Pattern::Wildcard(s) => write!(f, "*.{s}"),
            Pattern::Exact(s) => f.write_str(s),
        }
    }
}

/// Keys are configuration hostnames, not attacker-chosen, and lookups only probe: FxHash (the
/// rustc hasher) costs a fraction of std's SipHash per probe on the request path.
type FxMap<V> = rustc_hash::FxHashMap<Box<str>, V>;

/// A hostname claimed twice: the configuration is ambiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicatePattern {
    pub pattern: Pattern,
    pub first: ListenerId,
}

/// The compiled lookup: built once per configuration, read on every request.
#[derive(Clone, Debug, Default)]
pub struct ListenerSet {
    exact: FxMap<ListenerId>,
    wildcard: FxMap<ListenerId>,
    catch_all: Option<ListenerId>,
    count: u32,
}

impl ListenerSet {
    /// An empty set: every name belongs to no listener.
    pub fn new() -> ListenerSet {
        ListenerSet::default()
    }

    /// Registers `pattern` for `listener`. The same pattern twice in one listener is harmless and
    /// accepted; in two listeners it is refused, since a name must belong to exactly one.
    pub fn insert(
        &mut self,
        listener: ListenerId,
        pattern: Pattern,
    ) -> Result<(), DuplicatePattern> {
        self.count = self.count.max(listener.0.saturating_add(1));
        let slot = match &pattern {
            Pattern::CatchAll => &mut self.catch_all,
            Pattern::Wildcard(s) => {
                return insert_unique(&mut self.wildcard, s, listener, &pattern);
            }
            Pattern::Exact(s) => return insert_unique(&mut self.exact, s, listener, &pattern),
        };
        match slot {
            Some(first) if *first != listener => Err(DuplicatePattern {
                pattern,
                first: *first,
            }),
            _ => {
                *slot = Some(listener);
                Ok(())
            }
        }
    }

    /// The listener `name` belongs to, by the most specific pattern; `None` if no pattern
    /// matches and there is no catch-all.
    #[inline]
    pub fn listener_of(&self, name: &Name) -> Option<ListenerId> {
        if let Some(id) = self.exact.get(name.as_str()) {
            return Some(*id);
        }
        if !self.wildcard.is_empty() {
            // Longest suffix first: `*.b.example.com` beats `*.example.com` for `a.b.example.com`.
            for suffix in name.parent_suffixes() {
                if let Some(id) = self.wildcard.get(suffix) {
                    return Some(*id);
                }
            }
        }
        self.catch_all
    }

    /// The catch-all listener, if there is one.
    pub fn catch_all(&self) -> Option<ListenerId> {
        self.catch_all
    }

    /// Number of listeners seen (the highest id plus one).
    pub fn listener_count(&self) -> u32 {
        self.count
    }

    /// Number of exact and wildcard patterns (the catch-all not counted).
    pub fn pattern_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

fn insert_unique(
    map: &mut FxMap<ListenerId>,
    key: &str,
    listener: ListenerId,
    pattern: &Pattern,
) -> Result<(), DuplicatePattern> {
    match map.get(key) {
        Some(first) if *first != listener => Err(DuplicatePattern {
            pattern: pattern.clone(),
            first: *first,
        }),
        Some(_) => Ok(()),
        None => {
            map.insert(key.into(), listener);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(listeners: &[&[&str]]) -> ListenerSet {
        let mut s = ListenerSet::new();
        for (i, patterns) in listeners.iter().enumerate() {
            let id = ListenerId(i as u32);
            if patterns.is_empty() {
                s.insert(id, Pattern::CatchAll).unwrap();
            }
            for p in *patterns {
                s.insert(id, Pattern::parse(p).unwrap()).unwrap();
            }
        }
        s
    }

    fn of(s: &ListenerSet, name: &str) -> Option<u32> {
        s.listener_of(&Name::from_dns(name.as_bytes()).unwrap())
            .map(|l| l.0)
    }

    #[test]
    fn most_specific_pattern_wins() {
        let s = set(&[
            &[],
            &["second-example.org"],
            &["*.wildcard.org"],
            &["fourth-example.wildcard.org", "other.example.net"],
            &["*.deep.wildcard.org"],
        ]);
        assert_eq!(of(&s, "second-example.org"), Some(1));
        assert_eq!(of(&s, "a.wildcard.org"), Some(2));
        assert_eq!(of(&s, "x.y.wildcard.org"), Some(2));
        assert_eq!(of(&s, "fourth-example.wildcard.org"), Some(3));
        assert_eq!(of(&s, "other.example.net"), Some(3));
        assert_eq!(of(&s, "a.deep.wildcard.org"), Some(4));
        assert_eq!(of(&s, "deep.wildcard.org"), Some(2));
        // The wildcard never matches its apex: that falls to the catch-all.
        assert_eq!(of(&s, "wildcard.org"), Some(0));
        assert_eq!(of(&s, "unknown.test"), Some(0));
    }

    #[test]
    fn without_catch_all_unknown_names_belong_nowhere() {
        let s = set(&[&["a.example.com"], &["*.example.com"]]);
        assert_eq!(of(&s, "example.com"), None);
        assert_eq!(of(&s, "b.example.com"), Some(1));
        assert_eq!(of(&s, "a.example.com"), Some(0));
    }

    #[test]
    fn patterns_parse_and_reject() {
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::CatchAll);
        assert_eq!(
            Pattern::parse("*.Example.COM.").unwrap(),
            Pattern::Wildcard("example.com".into())
        );
        assert_eq!(
            Pattern::parse("xn--bcher-kva.example").unwrap(),
            Pattern::Exact("xn--bcher-kva.example".into())
        );
        for bad in [
            "a.*.com",
            "*a.com",
            "**.com",
            "*.",
            "*.*.com",
            "a..com",
            "",
            "b\u{fc}cher.de",
            "a.com:443",
            "ns/a.com",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn duplicates_across_listeners_are_refused() {
        let mut s = ListenerSet::new();
        s.insert(ListenerId(0), Pattern::parse("a.com").unwrap())
            .unwrap();
        s.insert(ListenerId(0), Pattern::parse("A.com.").unwrap())
            .unwrap();
        let err = s
            .insert(ListenerId(1), Pattern::parse("a.com").unwrap())
            .unwrap_err();
        assert_eq!(err.first, ListenerId(0));
        s.insert(ListenerId(0), Pattern::CatchAll).unwrap();
        assert!(s.insert(ListenerId(2), Pattern::CatchAll).is_err());
    }
}
