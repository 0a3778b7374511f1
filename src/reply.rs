//! The local replies sni-guard sends, prepared once so the request path only hands pointers to
//! Envoy: 421 for a valid name that belongs to another connection, 400 for an authority that is
//! no valid `host[:port]`.

use crate::policy::Reason;

/// One local reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    /// Response code details: what `%RESPONSE_CODE_DETAILS%` shows in Envoy's access log.
    pub details: &'static str,
    /// A short text body: browsers retry a 421 on a new connection and never show it; people
    /// with curl do.
    pub body: &'static str,
}

/// RFC 9110 §15.5.20: the client retries on a new connection, opened for the right host.
pub const MISDIRECTED: Reply = Reply {
    status: 421,
    details: "misdirected_request",
    body: "Misdirected Request: this connection cannot serve the requested host; \
retry on a new connection.\n",
};

/// RFC 9112 §3.2: a request whose Host is invalid gets 400. A retry elsewhere would fail alike.
pub const INVALID_AUTHORITY: Reply = Reply {
    status: 400,
    details: "invalid_authority",
    body: "Bad Request: the request's authority (Host) is not a valid host[:port].\n",
};

/// The reply for a refused request.
pub fn for_reason(reason: Reason) -> Reply {
    match reason {
        Reason::ListenerMismatch | Reason::MissingSni => MISDIRECTED,
        Reason::InvalidAuthority => INVALID_AUTHORITY,
    }
}

/// Headers of the reply, serialised in the proxy-wasm map format: a little-endian u32 count,
/// then (name length, value length) u32 pairs, then each name and value NUL-terminated.
pub fn serialized_headers() -> Vec<u8> {
    serialize_map(&[("content-type", "text/plain")])
}

/// Serialises header pairs in the proxy-wasm map format.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_authority_is_a_client_error_the_rest_misdirected() {
        assert_eq!(for_reason(Reason::ListenerMismatch), MISDIRECTED);
        assert_eq!(for_reason(Reason::MissingSni).status, 421);
        assert_eq!(for_reason(Reason::InvalidAuthority).status, 400);
        assert_eq!(
            for_reason(Reason::InvalidAuthority).details,
            "invalid_authority"
        );
    }

    #[test]
    fn map_format() {
        let got = serialize_map(&[("a", "bc")]);
        let want: Vec<u8> = [1u32, 1, 2]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .chain(*b"a\0bc\0")
            .collect();
        assert_eq!(got, want);
    }
}
