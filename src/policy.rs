//! The decision: does this request belong on this connection?
//!
//! Pure logic over the connection's SNI and the request's authority; the proxy-wasm glue only
//! fetches those two values and acts on the [`Verdict`].

use crate::listeners::{ListenerId, ListenerSet};
use crate::name::Name;

/// What the filter does with a request it judged misdirected (or whose authority is invalid).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Answer 421 (400 for an invalid authority).
    #[default]
    Enforce,
    /// Decide the same way, answer nothing, count and log what would have been answered.
    DryRun,
    /// Let it pass, uncounted. Per listener only: a host group whose clients do not retry on 421.
    Off,
}

impl Mode {
    /// The spelling in the configuration.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry_run",
            Mode::Off => "off",
        }
    }
}

/// What to do with a request on a connection that carried no SNI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingSni {
    /// Pass: clients that connect by IP address, or load balancers that strip SNI.
    #[default]
    Allow,
    /// Answer 421 on TLS connections (unless the host belongs to no listener at all). Plaintext
    /// connections never carry SNI and pass.
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

/// Why a request is refused. Also the `reason` label of the counters of local replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The host belongs to another listener than the SNI (in strict scope: differs from it).
    ListenerMismatch,
    /// The connection carried no SNI and `missing_sni` is `reject`.
    MissingSni,
    /// The authority is absent or not a valid `host[:port]`: it cannot belong to any listener.
    /// A client error, not a misdirection: answered 400 (RFC 9112 §3.2), since a retry on
    /// another connection would fail the same way.
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
    /// No SNI on the connection and `missing_sni` is `allow`, or no SNI on a plaintext
    /// connection (`reject` applies to TLS only: without a handshake there is no SNI to send).
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

/// A verdict and what to do about it: the [`Mode`] of the listener the request was judged for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub mode: Mode,
}

impl Decision {
    /// What the filter does.
    pub fn outcome(self) -> Outcome {
        match (self.verdict, self.mode) {
            (Verdict::Pass(_), _) | (Verdict::Misdirected(_), Mode::Off) => Outcome::Pass,
            (Verdict::Misdirected(reason), Mode::Enforce) => Outcome::Reply(reason),
            (Verdict::Misdirected(reason), Mode::DryRun) => Outcome::Observe(reason),
        }
    }
}

/// What the filter does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Continue, count nothing beyond the request.
    Pass,
    /// Answer (`reply::for_reason`), count it, record the verdict for the access log.
    Reply(Reason),
    /// Dry run: continue, count what would have been answered, record it for the access log.
    Observe(Reason),
}

impl Outcome {
    /// The verdict as the access log shows it (`%FILTER_STATE(wasm.sni_guard:PLAIN)%`), for
    /// requests that did not simply pass: what was done (`misdirected` for a 421, `rejected`
    /// for a 400; in dry run `would_misdirect`, `would_reject`), a colon, the reason.
    pub fn log_value(self) -> Option<&'static str> {
        Some(match self {
            Outcome::Pass => return None,
            Outcome::Reply(Reason::ListenerMismatch) => "misdirected:listener_mismatch",
            Outcome::Reply(Reason::MissingSni) => "misdirected:missing_sni",
            Outcome::Reply(Reason::InvalidAuthority) => "rejected:invalid_authority",
            Outcome::Observe(Reason::ListenerMismatch) => "would_misdirect:listener_mismatch",
            Outcome::Observe(Reason::MissingSni) => "would_misdirect:missing_sni",
            Outcome::Observe(Reason::InvalidAuthority) => "would_reject:invalid_authority",
        })
    }
}

/// What sni-guard knows of the connection's transport, read from the host only when needed.
pub trait Connection {
    /// True when the connection is TLS. Asked only for a request without SNI under
    /// `missing_sni: reject`, so that the common path costs no extra host call.
    fn is_tls(&mut self) -> bool;
}

/// A connection known to be TLS (the listener sni-guard is made for).
pub struct Tls;

impl Connection for Tls {
    fn is_tls(&mut self) -> bool {
        true
    }
}

impl<F: FnMut() -> bool> Connection for F {
    fn is_tls(&mut self) -> bool {
        self()
    }
}

/// Whether `on_log` reads Envoy's response flags and counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlagCounting {
    #[default]
    Count,
    /// No read, no counters: for users who count flags elsewhere (Envoy's stats access logger)
    /// or not at all.
    Off,
}

/// The compiled configuration.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The mode of strict scope, and of every listener without a `mode` of its own.
    pub mode: Mode,
    pub scope: Scope,
    pub missing_sni: MissingSni,
    pub protocols: Protocols,
    /// Per-listener `mode`, indexed by [`ListenerId`]; `None` (or absent): the top-level mode.
    pub listener_modes: Vec<Option<Mode>>,
    /// The listener of the filter chain this instance is configured on (`this_listener`).
    pub this_listener: Option<ListenerId>,
    pub response_flags: FlagCounting,
}

impl Policy {
    /// Decides one request on a TLS connection; see [`Policy::judge`].
    pub fn decide<A, F>(&self, sni: Option<&[u8]>, authority: F) -> Verdict
    where
        A: AsRef<[u8]>,
        F: FnOnce() -> Option<A>,
    {
        self.judge(sni, Tls, authority).verdict
    }

    /// Judges one request. `sni` is the connection's server name (`None` or empty when the
    /// client sent none); `connection` is asked whether it is TLS only for a request without
    /// SNI under `missing_sni: reject`; `authority` fetches the request's `:authority` and is
    /// only called when the answer depends on it, so a pass-through for a missing SNI costs no
    /// header lookup.
    ///
    /// The mode is the one of the listener the request's host belongs to: that listener's
    /// clients are the ones that get the 421 and must retry. A request whose authority is no
    /// valid name has no such listener and takes the SNI's listener's mode.
    pub fn judge<A, F, C>(&self, sni: Option<&[u8]>, mut connection: C, authority: F) -> Decision
    where
        A: AsRef<[u8]>,
        F: FnOnce() -> Option<A>,
        C: Connection,
    {
        let sni = sni.filter(|s| !s.is_empty());
        let decision = |verdict, listener| self.decision(verdict, listener);
        if sni.is_none() && (self.missing_sni == MissingSni::Allow || !connection.is_tls()) {
            return decision(Verdict::Pass(Pass::NoSni), None);
        }
        let host = authority().and_then(|a| Name::from_authority(a.as_ref()).ok());
        match &self.scope {
            Scope::Strict => {
                let verdict = match (host, sni) {
                    (None, _) => Verdict::Misdirected(Reason::InvalidAuthority),
                    (Some(_), None) => Verdict::Misdirected(Reason::MissingSni),
                    (Some(host), Some(sni)) => match Name::from_sni(sni) {
                        Ok(sni) if sni == host => Verdict::Pass(Pass::SameListener),
                        _ => Verdict::Misdirected(Reason::ListenerMismatch),
                    },
                };
                decision(verdict, None)
            }
            Scope::Listeners(set) => {
                let sni_listener = || {
                    sni.and_then(|s| Name::from_sni(s).ok())
                        .and_then(|n| set.listener_of(&n))
                };
                let Some(host) = host else {
                    return decision(
                        Verdict::Misdirected(Reason::InvalidAuthority),
                        sni_listener(),
                    );
                };
                let Some(host_listener) = set.listener_of(&host) else {
                    return decision(Verdict::Pass(Pass::UnknownHost), None);
                };
                let verdict = if sni.is_none() {
                    Verdict::Misdirected(Reason::MissingSni)
                } else if sni_listener() == Some(host_listener) {
                    Verdict::Pass(Pass::SameListener)
                } else {
                    Verdict::Misdirected(Reason::ListenerMismatch)
                };
                decision(verdict, Some(host_listener))
            }
        }
    }

    /// Judges one request, reading the SNI (`sni`) only when the verdict needs it. Returns the
    /// SNI if it was read.
    ///
    /// Chain-bound (`this_listener` set): Envoy picked this filter chain because the SNI matched
    /// its `server_names`, by the precedence the listener set uses (exact, longest wildcard, the
    /// chain without names). So a host that belongs to this chain's listener passes, and a host
    /// that belongs to no listener passes, exactly as [`Policy::judge`] would decide with the SNI
    /// in hand; neither needs the SNI. Everything else (a refusal, an invalid authority) is
    /// decided by [`Policy::judge`] on the SNI, so refusals are identical by construction. Where
    /// the premise fails the SNI is always read:
    /// - on the catch-all chain, which also gets connections without SNI and with server names
    ///   sni-guard refuses (a trailing dot), for which today's verdict differs;
    /// - under `missing_sni: reject`, which must know that the SNI is absent.
    pub fn judge_chain<S, A, FS, F, C>(
        &self,
        sni: FS,
        connection: C,
        authority: F,
    ) -> (Decision, Option<Option<S>>)
    where
        S: AsRef<[u8]>,
        A: AsRef<[u8]>,
        FS: FnOnce() -> Option<S>,
        F: FnOnce() -> Option<A>,
        C: Connection,
    {
        let bound = match (&self.scope, self.this_listener) {
            (Scope::Listeners(set), Some(this))
                if self.missing_sni == MissingSni::Allow && set.catch_all() != Some(this) =>
            {
                Some((set, this))
            }
            _ => None,
        };
        let Some((set, this)) = bound else {
            let sni = sni();
            let decision = self.judge(sni.as_ref().map(AsRef::as_ref), connection, authority);
            return (decision, Some(sni));
        };
        let raw = authority();
        if let Some(host) = raw
            .as_ref()
            .and_then(|a| Name::from_authority(a.as_ref()).ok())
        {
            match set.listener_of(&host) {
                None => return (self.decision(Verdict::Pass(Pass::UnknownHost), None), None),
                Some(listener) if listener == this => {
                    return (
                        self.decision(Verdict::Pass(Pass::SameListener), Some(this)),
                        None,
                    )
                }
                Some(_) => {}
            }
        }
        let sni = sni();
        let decision = self.judge(sni.as_ref().map(AsRef::as_ref), connection, || raw);
        (decision, Some(sni))
    }

    /// A verdict with the mode of the listener it was reached for.
    fn decision(&self, verdict: Verdict, listener: Option<ListenerId>) -> Decision {
        Decision {
            verdict,
            mode: self.mode_of(listener),
        }
    }

    /// The mode that applies to a request judged for `listener` (`None`: the top-level mode).
    pub fn mode_of(&self, listener: Option<ListenerId>) -> Mode {
        listener
            .and_then(|l| usize::try_from(l.0).ok())
            .and_then(|i| self.listener_modes.get(i).copied().flatten())
            .unwrap_or(self.mode)
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
    fn missing_sni_reject_applies_to_tls_only_and_asks_only_without_sni() {
        let mut p = listeners(&[&["a.example.com"], &["b.example.com"]]);
        p.missing_sni = MissingSni::Reject;
        let plaintext = || false;
        let judge = |p: &Policy, sni: Option<&str>, tls: bool, host: &str| {
            p.judge(sni.map(str::as_bytes), || tls, || Some(host))
                .verdict
        };
        assert_eq!(
            judge(&p, None, false, "a.example.com"),
            Verdict::Pass(Pass::NoSni)
        );
        assert_eq!(
            judge(&p, None, true, "a.example.com"),
            Verdict::Misdirected(Reason::MissingSni)
        );
        // With an SNI the transport is never asked; nor without one under `allow`.
        let never = || -> bool { panic!("transport read") };
        let d = p.judge(Some(b"a.example.com"), never, || Some("b.example.com"));
        assert_eq!(d.verdict, MISMATCH);
        p.missing_sni = MissingSni::Allow;
        let d = p.judge(None, never, || -> Option<&str> { panic!("authority read") });
        assert_eq!(d.verdict, Verdict::Pass(Pass::NoSni));
        // Plaintext under `reject` does not read the authority either.
        p.missing_sni = MissingSni::Reject;
        let d = p.judge(None, plaintext, || -> Option<&str> {
            panic!("authority read")
        });
        assert_eq!(d.outcome(), Outcome::Pass);
    }

    #[test]
    fn per_listener_mode_follows_the_host_listener() {
        let mut p = listeners(&[&["a.example.com"], &["b.example.com"], &["c.example.com"]]);
        p.mode = Mode::DryRun;
        p.listener_modes = vec![Some(Mode::Enforce), Some(Mode::Off), None];
        let outcome =
            |sni: &str, host: &str| p.judge(Some(sni.as_bytes()), Tls, || Some(host)).outcome();
        use Reason::*;
        // b.example.com's clients do not retry on 421: their listener is off.
        assert_eq!(outcome("a.example.com", "b.example.com"), Outcome::Pass);
        assert_eq!(
            outcome("b.example.com", "a.example.com"),
            Outcome::Reply(ListenerMismatch)
        );
        // c has no mode of its own: the top-level dry run.
        assert_eq!(
            outcome("a.example.com", "c.example.com"),
            Outcome::Observe(ListenerMismatch)
        );
        // An invalid authority has no listener: the SNI's listener decides, else the top level.
        assert_eq!(
            outcome("a.example.com", "a.example.com,b"),
            Outcome::Reply(InvalidAuthority)
        );
        assert_eq!(outcome("b.example.com", "x@a.example.com"), Outcome::Pass);
        assert_eq!(
            outcome("z.example.com", "a b"),
            Outcome::Observe(InvalidAuthority)
        );
        // The verdict itself does not depend on the mode.
        let d = p.judge(Some(b"a.example.com"), Tls, || Some("b.example.com"));
        assert_eq!((d.verdict, d.mode), (MISMATCH, Mode::Off));
    }

    #[test]
    fn outcomes_and_their_log_values() {
        let d = |verdict, mode| Decision { verdict, mode }.outcome();
        assert_eq!(d(SAME, Mode::Enforce), Outcome::Pass);
        assert_eq!(d(MISMATCH, Mode::Off), Outcome::Pass);
        assert_eq!(Outcome::Pass.log_value(), None);
        assert_eq!(
            d(MISMATCH, Mode::Enforce).log_value(),
            Some("misdirected:listener_mismatch")
        );
        assert_eq!(
            d(Verdict::Misdirected(Reason::MissingSni), Mode::DryRun).log_value(),
            Some("would_misdirect:missing_sni")
        );
        let invalid = Verdict::Misdirected(Reason::InvalidAuthority);
        assert_eq!(
            d(invalid, Mode::Enforce).log_value(),
            Some("rejected:invalid_authority")
        );
        assert_eq!(
            d(invalid, Mode::DryRun).log_value(),
            Some("would_reject:invalid_authority")
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
