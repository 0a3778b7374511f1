//! The names of sni-guard's counters, and where each one sits in the filter's table of metric ids.
//!
//! Names are dot-separated Envoy stat names; the Prometheus endpoint turns the dots into
//! underscores. Labels are the trailing segments (`sni_guard.misdirected.<reason>.<protocol>`,
//! `sni_guard.response_flag.<code>`), so Envoy's tag extraction (`stats_config.stats_tags`, see
//! `envoy/`) can lift them into `reason`, `protocol` and `flag` labels; without it they stay
//! readable as the last segments of the name.

use crate::flags;
use crate::policy::{Protocol, Reason};

/// Prefix of every counter.
pub const PREFIX: &str = "sni_guard";

/// Requests whose SNI and authority were compared (or that had no SNI to compare): every request
/// of a checked protocol.
pub const REQUESTS_CHECKED: &str = "sni_guard.requests_checked";
/// Of those, the requests on a connection without SNI, whatever their verdict (passed, refused,
/// or a host that belongs to no listener).
pub const REQUESTS_WITHOUT_SNI: &str = "sni_guard.requests_without_sni";

/// Protocol labels: the three protocols plus `unknown` when Envoy did not say.
pub const PROTOCOL_LABELS: usize = Protocol::ALL.len() + 1;

/// Index of a (reason, protocol) pair in the per-mode table of 421 counters.
pub fn verdict_index(reason: Reason, protocol: Option<Protocol>) -> usize {
    let r = Reason::ALL.iter().position(|x| *x == reason).unwrap_or(0);
    let p = protocol
        .and_then(|p| Protocol::ALL.iter().position(|x| *x == p))
        .unwrap_or(Protocol::ALL.len());
    r * PROTOCOL_LABELS + p
}

/// Number of (reason, protocol) pairs.
pub const VERDICT_COUNTERS: usize = Reason::ALL.len() * PROTOCOL_LABELS;

/// Every (reason, protocol) pair with its [`verdict_index`], in index order.
pub fn verdict_labels() -> impl Iterator<Item = (Reason, Option<Protocol>)> {
    Reason::ALL.into_iter().flat_map(|r| {
        Protocol::ALL
            .into_iter()
            .map(Some)
            .chain(std::iter::once(None))
            .map(move |p| (r, p))
    })
}

fn protocol_label(p: Option<Protocol>) -> &'static str {
    p.map_or("unknown", Protocol::label)
}

/// Name of the counter of local replies sent: 421, or 400 for `invalid_authority`. Counted only
/// when Envoy accepted the reply, so it equals what clients were answered.
pub fn misdirected(reason: Reason, protocol: Option<Protocol>) -> String {
    format!(
        "{PREFIX}.misdirected.{}.{}",
        reason.label(),
        protocol_label(protocol)
    )
}

/// Name of the counter of replies a dry run (or a `dry_run` listener) would have sent.
pub fn would_misdirect(reason: Reason, protocol: Option<Protocol>) -> String {
    format!(
        "{PREFIX}.would_misdirect.{}.{}",
        reason.label(),
        protocol_label(protocol)
    )
}

/// Number of response-flag counters: the core flags plus `other`.
pub const FLAG_COUNTERS: usize = flags::CORE_FLAG_COUNT + 1;

/// Name of the counter of one response flag (index from [`flags::set_flags`]).
pub fn response_flag(index: usize) -> String {
    format!("{PREFIX}.response_flag.{}", flags::code(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_indexes_are_dense_and_match_labels() {
        let labels: Vec<_> = verdict_labels().collect();
        assert_eq!(labels.len(), VERDICT_COUNTERS);
        for (i, (r, p)) in labels.into_iter().enumerate() {
            assert_eq!(verdict_index(r, p), i);
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            misdirected(Reason::ListenerMismatch, Some(Protocol::Http2)),
            "sni_guard.misdirected.listener_mismatch.http2"
        );
        assert_eq!(
            would_misdirect(Reason::MissingSni, None),
            "sni_guard.would_misdirect.missing_sni.unknown"
        );
        assert_eq!(response_flag(8), "sni_guard.response_flag.NR");
        assert_eq!(response_flag(30), "sni_guard.response_flag.other");
    }
}
