//! The decision: does this request belong on this connection?
//!
//! Pure logic over the connection's SNI and the request's authority; the proxy-wasm glue only
//! fetches those two values and acts on the [`Verdict`].

use crate::listeners::ListenerSet;
use crate::name::Name;

/// What the filter does with a misdirected request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Answer 421.
    #[default]
    Enforce,
    /// Decide the same way, answer nothing, count and log what would have been a 421.
    DryRun,
}

/// What to do with a request on a connection that carried no SNI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingSni {
    /// Pass: clients that connect by IP address, or load balancers that strip SNI.
    #[default]
    Allow,
    /// Answer 421 (unless the host belongs to no listener at all).
    Reject,
}

/// The HTTP version of a request, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 and HTTP/1.1.
    Http1,
    Http2,
    Http3,
}

impl Protocol {
    /// All protocols, in counter order.
    pub const ALL: [Protocol; 3] = [Protocol::Http1, Protocol::Http2, Protocol::Http3];

    /// Parses Envoy's `request.protocol` value (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`), which
    /// is also the spelling used in the configuration.
    pub fn from_envoy(value: &[u8]) -> Option<Protocol> {
        match value {
            b"HTTP/1.1" | b"HTTP/1.0" => Some(Protocol::Http1),
            b"HTTP/2" => Some(Protocol::Http2),
            b"HTTP/3" => Some(Protocol::Http3),
            _ => None,
        }
    }

    /// The label used in metric names.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Http3 => "http3",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Protocol::Http1 => 1,
            Protocol::Http2 => 2,
            Protocol::Http3 => 4,
        }
    }
}

/// A set of protocols to check; the others pass untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols(u8);

impl Protocols {
    pub const ALL: Protocols = Protocols(7);
    pub const NONE: Protocols = Protocols(0);

    pub fn with(self, p: Protocol) -> Protocols {
        Protocols(self.0 | p.bit())
    }
    pub fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }
    /// True when every protocol is checked: the filter then need not ask Envoy for the protocol.
    pub fn is_all(self) -> bool {
        self == Protocols::ALL
    }
}

impl Default for Protocols {
    fn default() -> Protocols {
        Protocols::ALL
    }
}

/// Which names may share a connection.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    /// The host must equal the SNI (after normalisation).
    #[default]
    Strict,
    /// The host must belong to the same listener as the SNI.
    Listeners(ListenerSet),
}

/// Why a request is misdirected. Also the `reason` label of the 421 counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The host belongs to another listener than the SNI (in strict scope: differs from it).
    ListenerMismatch,
    /// The connection carried no SNI and `missing_sni` is `reject`.
    MissingSni,
    /// The authority is absent or not a valid `host[:port]`: it cannot belong to any listener.
    InvalidAuthority,
}

impl Reason {
    pub const ALL: [Reason; 3] = [
        Reason::ListenerMismatch,
        Reason::MissingSni,
        Reason::InvalidAuthority,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::ListenerMismatch => "listener_mismatch",
            Reason::MissingSni => "missing_sni",
            Reason::InvalidAuthority => "invalid_authority",
        }
    }
}

/// Why a request passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// No SNI on the connection and `missing_sni` is `allow`.
    NoSni,
    /// The host belongs to the SNI's listener (or equals the SNI in strict scope).
    SameListener,
    /// The host belongs to no listener: Envoy's routing gives the answer (typically 404).
    UnknownHost,
}

/// The outcome of [`Policy::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass(Pass),
    Misdirected(Reason),
}

/// The compiled configuration.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub mode: Mode,
    pub scope: Scope,
    pub missing_sni: MissingSni,
    pub protocols: Protocols,
}

impl Policy {
    /// Decides one request. `sni` is the connection's server name (`None` or empty when the
    /// client sent none); `authority` fetches the request's `:authority` and is only called when
    /// the answer depends on it, so a pass-through for a missing SNI costs no header lookup.
    pub fn decide<A, F>(&self, sni: Option<&[u8]>, authority: F) -> Verdict
    where
        A: AsRef<[u8]>,
        F: FnOnce() -> Option<A>,
    {
        let sni = sni.filter(|s| !s.is_empty());
        if sni.is_none() && self.missing_sni == MissingSni::Allow {
            return Verdict::Pass(Pass::NoSni);
        }
        let host = authority().and_then(|a| Name::from_authority(a.as_ref()).ok());
        let Some(host) = host else {
            return Verdict::Misdirected(Reason::InvalidAuthority);
        };
        match &self.scope {
            Scope::Strict => match sni {
                None => Verdict::Misdirected(Reason::MissingSni),
                Some(sni) => match Name::from_sni(sni) {
                    Ok(sni) if sni == host => Verdict::Pass(Pass::SameListener),
                    _ => Verdict::Misdirected(Reason::ListenerMismatch),
                },
            },
            Scope::Listeners(set) => {
                let Some(host_listener) = set.listener_of(&host) else {
                    return Verdict::Pass(Pass::UnknownHost);
                };
                let Some(sni) = sni else {
                    return Verdict::Misdirected(Reason::MissingSni);
                };
                let sni_listener = Name::from_sni(sni).ok().and_then(|n| set.listener_of(&n));
                if sni_listener == Some(host_listener) {
                    Verdict::Pass(Pass::SameListener)
                } else {
                    Verdict::Misdirected(Reason::ListenerMismatch)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::{ListenerId, Pattern};

    fn strict() -> Policy {
        Policy::default()
    }

    fn decide(p: &Policy, sni: Option<&str>, host: Option<&str>) -> Verdict {
        p.decide(sni.map(str::as_bytes), || host)
    }

    fn listeners(groups: &[&[&str]]) -> Policy {
        let mut set = ListenerSet::new();
        for (i, g) in groups.iter().enumerate() {
            let id = ListenerId(i as u32);
            if g.is_empty() {
                set.insert(id, Pattern::CatchAll).unwrap();
            }
            for p in *g {
                set.insert(id, Pattern::parse(p).unwrap()).unwrap();
            }
        }
        Policy {
            scope: Scope::Listeners(set),
            ..Policy::default()
        }
    }

    const MISMATCH: Verdict = Verdict::Misdirected(Reason::ListenerMismatch);
    const SAME: Verdict = Verdict::Pass(Pass::SameListener);

    #[test]
    fn strict_equality_after_normalisation() {
        let p = strict();
        assert_eq!(
            decide(&p, Some("a.example.com"), Some("a.example.com")),
            SAME
        );
        assert_eq!(
            decide(&p, Some("a.example.com"), Some("A.Example.com.:443")),
            SAME
        );
        // Envoy's chain match keeps an SNI's trailing dot: such a connection is not a's.
        assert_eq!(
            decide(&p, Some("a.example.com."), Some("a.example.com")),
            MISMATCH
        );
        assert_eq!(
            decide(&p, Some("a.example.com"), Some("b.example.com")),
            MISMATCH
        );
        assert_eq!(
            decide(&p, Some("example.com"), Some("a.example.com")),
            MISMATCH
        );
        assert_eq!(
            decide(
                &p,
                Some("a.example.com"),
                Some("a.example.com,b.example.com")
            ),
            Verdict::Misdirected(Reason::InvalidAuthority)
        );
        assert_eq!(
            decide(&p, Some("a.example.com"), None),
            Verdict::Misdirected(Reason::InvalidAuthority)
        );
        assert_eq!(
            decide(&p, Some("a.example.com"), Some("[::1]:443")),
            MISMATCH
        );
    }

    #[test]
    fn missing_sni_allow_does_not_read_the_authority() {
        let p = strict();
        let v = p.decide(None, || -> Option<&str> { panic!("authority read") });
        assert_eq!(v, Verdict::Pass(Pass::NoSni));
        let v = p.decide(Some(b""), || -> Option<&str> { panic!("authority read") });
        assert_eq!(v, Verdict::Pass(Pass::NoSni));
    }

    #[test]
    fn missing_sni_reject() {
        let mut p = strict();
        p.missing_sni = MissingSni::Reject;
        assert_eq!(
            decide(&p, None, Some("a.example.com")),
            Verdict::Misdirected(Reason::MissingSni)
        );
        let mut p = listeners(&[&["a.example.com"]]);
        p.missing_sni = MissingSni::Reject;
        assert_eq!(
            decide(&p, None, Some("a.example.com")),
            Verdict::Misdirected(Reason::MissingSni)
        );
        assert_eq!(
            decide(&p, None, Some("elsewhere.test")),
            Verdict::Pass(Pass::UnknownHost)
        );
    }

    #[test]
    fn listener_groups_allow_coalescing_within_a_listener_only() {
        let p = listeners(&[
            &[],
            &["second-example.org"],
            &["*.wildcard.org"],
            &["fourth-example.wildcard.org", "other.example.net"],
        ]);
        // Wildcard siblings share a listener.
        assert_eq!(
            decide(&p, Some("a.wildcard.org"), Some("b.wildcard.org")),
            SAME
        );
        // Exact inside wildcard is its own listener.
        assert_eq!(
            decide(
                &p,
                Some("a.wildcard.org"),
                Some("fourth-example.wildcard.org")
            ),
            MISMATCH
        );
        assert_eq!(
            decide(
                &p,
                Some("fourth-example.wildcard.org"),
                Some("other.example.net")
            ),
            SAME
        );
        // Catch-all names share the catch-all listener.
        assert_eq!(decide(&p, Some("x.test"), Some("y.test")), SAME);
        assert_eq!(
            decide(&p, Some("x.test"), Some("second-example.org")),
            MISMATCH
        );
        assert_eq!(
            decide(&p, Some("second-example.org"), Some("x.test")),
            MISMATCH
        );
    }

    #[test]
    fn unknown_host_passes_without_catch_all() {
        let p = listeners(&[&["a.example.com"], &["b.example.com"]]);
        assert_eq!(
            decide(&p, Some("a.example.com"), Some("c.example.com")),
            Verdict::Pass(Pass::UnknownHost)
        );
        assert_eq!(
            decide(&p, Some("c.example.com"), Some("a.example.com")),
            MISMATCH
        );
        assert_eq!(
            decide(&p, Some("a.example.com"), Some("b.example.com")),
            MISMATCH
        );
    }

    #[test]
    fn protocols_set() {
        assert!(Protocols::ALL.is_all());
        let p = Protocols::NONE.with(Protocol::Http2);
        assert!(p.contains(Protocol::Http2) && !p.contains(Protocol::Http1) && !p.is_all());
        assert_eq!(Protocol::from_envoy(b"HTTP/1.0"), Some(Protocol::Http1));
        assert_eq!(Protocol::from_envoy(b"HTTP/2"), Some(Protocol::Http2));
        assert_eq!(Protocol::from_envoy(b"h2"), None);
    }
}
