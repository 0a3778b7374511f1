//! The local reply sent for a misdirected request, prepared once so the request path only hands
//! pointers to Envoy.

/// RFC 9110 §15.5.20.
pub const STATUS: u32 = 421;

/// Response code details: what `%RESPONSE_CODE_DETAILS%` shows in Envoy's access log.
pub const DETAILS: &str = "misdirected_request";

/// A short text body: browsers retry on a new connection and never show it; people with curl do.
pub const BODY: &str = "Misdirected Request: this connection cannot serve the requested host; \
retry on a new connection.\n";

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
