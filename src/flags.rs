//! Envoy's response flags: the reasons Envoy itself gives for an answer it did not get from an
//! upstream (NR: no route, UF: upstream connection failure, UO: overflow, ...).
//!
//! Envoy exposes them to Wasm as the `response.flags` property: the legacy 64-bit mask of the 30
//! core flags, one bit per flag in this order, as 8 bytes little-endian.

/// The 30 core flags as (bit, short code, Envoy's long name), in bit order.
pub const CORE_FLAGS: [(&str, &str); 30] = [
    ("LH", "FailedLocalHealthCheck"),
    ("UH", "NoHealthyUpstream"),
    ("UT", "UpstreamRequestTimeout"),
    ("LR", "LocalReset"),
    ("UR", "UpstreamRemoteReset"),
    ("UF", "UpstreamConnectionFailure"),
    ("UC", "UpstreamConnectionTermination"),
    ("UO", "UpstreamOverflow"),
    ("NR", "NoRouteFound"),
    ("DI", "DelayInjected"),
    ("FI", "FaultInjected"),
    ("RL", "RateLimited"),
    ("UAEX", "UnauthorizedExternalService"),
    ("RLSE", "RateLimitServiceError"),
    ("DC", "DownstreamConnectionTermination"),
    ("URX", "UpstreamRetryLimitExceeded"),
    ("SI", "StreamIdleTimeout"),
    ("IH", "InvalidEnvoyRequestHeaders"),
    ("DPE", "DownstreamProtocolError"),
    ("UMSDR", "UpstreamMaxStreamDurationReached"),
    ("RFCF", "ResponseFromCacheFilter"),
    ("NFCF", "NoFilterConfigFound"),
    ("DT", "DurationTimeout"),
    ("UPE", "UpstreamProtocolError"),
    ("NC", "NoClusterFound"),
    ("OM", "OverloadManager"),
    ("DF", "DnsResolutionFailed"),
    ("DO", "DropOverLoad"),
    ("DR", "DownstreamRemoteReset"),
    ("UDO", "UnconditionalDropOverload"),
];

/// Number of core flags; bits at or above this index are counted as `other`.
pub const CORE_FLAG_COUNT: usize = CORE_FLAGS.len();

/// Decodes the property value. Anything but 8 bytes (an older Envoy, a future encoding) gives
/// `None`, and no flag is counted.
pub fn decode(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The indexes of the set bits, lowest first; bits beyond the core flags come out as
/// [`CORE_FLAG_COUNT`] (`other`), once.
pub fn set_flags(mask: u64) -> impl Iterator<Item = usize> {
    let core_mask = (1u64 << CORE_FLAG_COUNT) - 1;
    let core = mask & core_mask;
    let other = mask & !core_mask != 0;
    (0..CORE_FLAG_COUNT)
        .filter(move |bit| core & (1u64 << bit) != 0)
        .chain(other.then_some(CORE_FLAG_COUNT))
}

/// The short code of a flag index from [`set_flags`].
pub fn code(index: usize) -> &'static str {
    CORE_FLAGS.get(index).map_or("other", |(code, _)| code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bits() {
        assert_eq!(code(1), "UH");
        assert_eq!(code(5), "UF");
        assert_eq!(code(7), "UO");
        assert_eq!(code(8), "NR");
        assert_eq!(code(29), "UDO");
        assert_eq!(code(30), "other");
    }

    #[test]
    fn decode_and_iterate() {
        assert_eq!(decode(&256u64.to_le_bytes()), Some(256));
        assert_eq!(decode(&[1, 2, 3]), None);
        let got: Vec<_> = set_flags((1 << 8) | (1 << 5)).collect();
        assert_eq!(got, [5, 8]);
        assert_eq!(set_flags(0).count(), 0);
        let got: Vec<_> = set_flags((1 << 40) | (1 << 35) | 1).collect();
        assert_eq!(got, [0, 30]);
    }

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<_> = CORE_FLAGS.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 30);
    }
}
