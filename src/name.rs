//! Parsing and normalising the two names sni-guard compares: the TLS server name (SNI) and the
//! host part of the request's `:authority` (or HTTP/1.1 `Host`).
//!
//! Both are normalised the same way so that only real differences remain: ASCII lowercase, the
//! port removed, one trailing dot removed. Anything that is not a plain `host[:port]` is rejected
//! instead of "cleaned up", because every lenient rewrite of an attacker-controlled authority is a
//! possible bypass (userinfo, percent-encoding, joined duplicate `Host` headers, whitespace).
//!
//! The result lives in a fixed-size buffer: the request path allocates nothing here.

use std::fmt;

/// Longest name we accept, in bytes. DNS names are at most 253 bytes (255 on the wire); an IPv6
/// literal with brackets is at most 47. Anything longer cannot be a name a certificate covers.
pub const MAX_NAME_LEN: usize = 253;

/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// A normalised host name: lowercase ASCII, no port, no trailing dot, at most [`MAX_NAME_LEN`]
/// bytes. Either a DNS-style name (`a.example.com`, `10.0.0.1`) or a bracketed IPv6 literal
/// (`[::1]`).
#[derive(Clone, Copy)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

/// Why an authority or server name was not accepted as a name. The request never matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Nothing before the port, or nothing at all.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] or a label longer than 63 bytes.
    TooLong,
    /// A byte that has no place in a host name: userinfo `@`, `%`, `,`, whitespace, non-ASCII...
    InvalidCharacter,
    /// Two dots in a row, a leading dot, or a trailing dot in a server name.
    EmptyLabel,
    /// A port that is empty, not decimal, or above 65535.
    InvalidPort,
    /// A `[` without its `]`, or an IPv6 literal with something other than hex digits, `:` and `.`.
    InvalidIpLiteral,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty host",
            NameError::TooLong => "name or label too long",
            NameError::InvalidCharacter => "character not allowed in a host name",
            NameError::EmptyLabel => "empty label",
            NameError::InvalidPort => "port is not a number from 0 to 65535",
            NameError::InvalidIpLiteral => "malformed IPv6 literal",
        })
    }
}

impl Name {
    /// The normalised name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever written into `bytes`, so this cannot fail; the fallback keeps
        // the request path free of panics all the same.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The normalised name as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Parses a TLS server name as Envoy reports it. SNI carries no port (RFC 6066 §3), so a
    /// `:` is an error; case is normalised (Envoy lowercases it too).
    ///
    /// A trailing dot is an error, not normalised: RFC 6066 forbids it, and Envoy's filter chain
    /// match does not strip it, so `a.example.com.` lands on the default chain. Reading it as
    /// `a.example.com` would let that chain serve a.example.com's hosts (the Traefik
    /// CVE-2022-23632 pattern).
    pub fn from_sni(raw: &[u8]) -> Result<Name, NameError> {
        if raw.first() == Some(&b'[') {
            // RFC 6066 forbids IP literals in SNI; a bracket is never a valid server name.
            return Err(NameError::InvalidCharacter);
        }
        if raw.last() == Some(&b'.') {
            return Err(NameError::EmptyLabel);
        }
        Name::from_dns(raw)
    }

    /// Parses the host out of an `:authority` / `Host` value: `host`, `host:port`, `[v6]` or
    /// `[v6]:port`. Userinfo, paths, lists and anything not ASCII are rejected.
    pub fn from_authority(raw: &[u8]) -> Result<Name, NameError> {
        if raw.first() == Some(&b'[') {
            return Name::from_ip_literal(raw);
        }
        let host = match raw.iter().rposition(|&b| b == b':') {
            Some(colon) => {
                let (host, port) = raw.split_at(colon);
                validate_port(port.get(1..).unwrap_or(&[]))?;
                host
            }
            None => raw,
        };
        Name::from_dns(host)
    }

    /// Parses a DNS-style name (no port, no brackets). Used for SNI, the host part of an
    /// authority, and the names of a listener configuration.
    pub fn from_dns(raw: &[u8]) -> Result<Name, NameError> {
        let raw = raw.strip_suffix(b".").unwrap_or(raw);
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let mut name = Name {
            len: 0,
            bytes: [0; MAX_NAME_LEN],
        };
        let mut label_len = 0usize;
        for (slot, &b) in name.bytes.iter_mut().zip(raw) {
            match b {
                b'.' => {
                    if label_len == 0 {
                        return Err(NameError::EmptyLabel);
                    }
                    label_len = 0;
                }
                // Underscore is not a hostname character (RFC 952) but appears in real service
                // names (`_acme-challenge`, Kubernetes headless records); it cannot be used to
                // disguise one name as another, so it is accepted.
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label_len += 1,
                b'A'..=b'Z' => label_len += 1,
                _ => return Err(NameError::InvalidCharacter),
            }
            if label_len > MAX_LABEL_LEN {
                return Err(NameError::TooLong);
            }
            *slot = b.to_ascii_lowercase();
        }
        if label_len == 0 {
            // `raw` ended with a second dot ("a.com..").
            return Err(NameError::EmptyLabel);
        }
        name.len = raw.len() as u8;
        Ok(name)
    }

    /// Parses `[v6]` or `[v6]:port`, keeping the brackets in the normalised form. The address is
    /// checked for its alphabet, not canonicalised: SNI never carries an IP literal, so a literal
    /// only ever needs to equal itself.
    fn from_ip_literal(raw: &[u8]) -> Result<Name, NameError> {
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(NameError::InvalidIpLiteral)?;
        let (literal, rest) = raw.split_at(close + 1);
        if literal.len() > MAX_NAME_LEN {
            // The length is stored in a u8: a longer literal would be silently truncated.
            return Err(NameError::TooLong);
        }
        if !rest.is_empty() {
            match rest.split_first() {
                Some((b':', port)) => validate_port(port)?,
                _ => return Err(NameError::InvalidIpLiteral),
            }
        }
        let inner = literal
            .get(1..literal.len() - 1)
            .ok_or(NameError::InvalidIpLiteral)?;
        if inner.len() < 2 || !inner.contains(&b':') {
            return Err(NameError::InvalidIpLiteral);
        }
        if !inner
            .iter()
            .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            // Zone identifiers (`%25eth0`) and IPvFuture are not accepted from clients.
            return Err(NameError::InvalidIpLiteral);
        }
        let mut name = Name {
            len: 0,
            bytes: [0; MAX_NAME_LEN],
        };
        for (slot, &b) in name.bytes.iter_mut().zip(literal) {
            *slot = b.to_ascii_lowercase();
        }
        name.len = literal.len() as u8;
        Ok(name)
    }

    /// The part after the first label (`b.c` for `a.b.c`), if any. Wildcard matching walks
    /// these suffixes from the longest to the shortest.
    pub fn parent_suffixes(&self) -> impl Iterator<Item = &str> {
        let s = self.as_str();
        let is_literal = s.starts_with('[');
        s.match_indices('.')
            .filter(move |_| !is_literal)
            .filter_map(move |(i, _)| s.get(i + 1..))
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Name {}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", self.as_str())
    }
}

/// A port is 1 to 5 decimal digits with a value of at most 65535. An empty port (`host:`) is
/// legal in RFC 3986 but no client sends it; it is treated as malformed.
fn validate_port(port: &[u8]) -> Result<(), NameError> {
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(NameError::InvalidPort);
    }
    let value = port
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    if value > 65535 {
        return Err(NameError::InvalidPort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Result<String, NameError> {
        Name::from_authority(s.as_bytes()).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn strips_port_case_and_one_trailing_dot() {
        assert_eq!(auth("A.Example.COM:8443").unwrap(), "a.example.com");
        assert_eq!(auth("a.example.com.").unwrap(), "a.example.com");
        assert_eq!(auth("a.example.com.:443").unwrap(), "a.example.com");
        assert_eq!(auth("localhost").unwrap(), "localhost");
        assert_eq!(auth("10.0.0.1:80").unwrap(), "10.0.0.1");
    }

    #[test]
    fn ipv6_literals_keep_brackets_and_lose_port() {
        assert_eq!(auth("[::1]:443").unwrap(), "[::1]");
        assert_eq!(auth("[::1]").unwrap(), "[::1]");
        assert_eq!(auth("[2001:DB8::1]").unwrap(), "[2001:db8::1]");
        assert_eq!(auth("[::ffff:10.0.0.1]:1").unwrap(), "[::ffff:10.0.0.1]");
    }

    #[test]
    fn rejects_what_is_not_host_and_port() {
        let cases = [
            ("", NameError::Empty),
            (":443", NameError::Empty),
            (".", NameError::Empty),
            ("a.com:", NameError::InvalidPort),
            ("a.com:abc", NameError::InvalidPort),
            ("a.com:443:443", NameError::InvalidCharacter),
            ("a.com:65536", NameError::InvalidPort),
            ("a.com:000443", NameError::InvalidPort),
            ("user@a.com", NameError::InvalidCharacter),
            ("a.com,b.com", NameError::InvalidCharacter),
            ("a.com b.com", NameError::InvalidCharacter),
            (" a.com", NameError::InvalidCharacter),
            ("a%2ecom", NameError::InvalidCharacter),
            ("a..com", NameError::EmptyLabel),
            (".a.com", NameError::EmptyLabel),
            ("a.com..", NameError::EmptyLabel),
            ("::1", NameError::InvalidCharacter),
            ("[::1", NameError::InvalidIpLiteral),
            ("[::1]x", NameError::InvalidIpLiteral),
            ("[::1]:", NameError::InvalidPort),
            ("[]", NameError::InvalidIpLiteral),
            ("[fe80::1%25eth0]", NameError::InvalidIpLiteral),
            ("[a.com]", NameError::InvalidIpLiteral),
            ("b\u{fc}cher.de", NameError::InvalidCharacter),
            ("a.com/path", NameError::InvalidCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(auth(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn length_limits() {
        let label = "a".repeat(63);
        assert!(auth(&format!("{label}.com")).is_ok());
        assert_eq!(auth(&format!("a{label}.com")), Err(NameError::TooLong));
        let long = [label.as_str(); 5].join(".");
        assert_eq!(auth(&long), Err(NameError::TooLong));
        let max = format!("{}.{}", [label.as_str(); 3].join("."), "b".repeat(61));
        assert_eq!(max.len(), 253);
        assert_eq!(auth(&max).unwrap(), max);
        assert_eq!(auth(&format!("{max}.")).unwrap(), max);
        let literal = format!("[{}]", ":".repeat(300));
        assert_eq!(auth(&literal), Err(NameError::TooLong));
    }

    #[test]
    fn sni_normalises_and_refuses_ports_and_literals() {
        let sni = |s: &str| Name::from_sni(s.as_bytes()).map(|n| n.as_str().to_owned());
        assert_eq!(sni("A.example.com").unwrap(), "a.example.com");
        assert_eq!(sni("a.example.com."), Err(NameError::EmptyLabel));
        assert_eq!(sni("a.example.com:443"), Err(NameError::InvalidCharacter));
        assert_eq!(sni("[::1]"), Err(NameError::InvalidCharacter));
        assert_eq!(sni(""), Err(NameError::Empty));
    }

    #[test]
    fn parent_suffixes_walk_longest_first() {
        let n = Name::from_dns(b"a.b.example.com").unwrap();
        let got: Vec<_> = n.parent_suffixes().collect();
        assert_eq!(got, ["b.example.com", "example.com", "com"]);
        let lit = Name::from_authority(b"[::1]").unwrap();
        assert_eq!(lit.parent_suffixes().count(), 0);
    }
}
