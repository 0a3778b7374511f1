//! `:authority` / `Host` parsing: never panics, and what it accepts is a fixed point of the
//! normalisation (≤ 253 bytes, lowercase, no port, no trailing dot, parses back to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sni_guard::name::{Name, MAX_NAME_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = Name::from_authority(data) {
        let s = name.as_bytes();
        assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN, "{data:?}");
        assert!(!s.iter().any(u8::is_ascii_uppercase) && s.last() != Some(&b'.'));
        assert_eq!(name.as_str().as_bytes(), s);
        assert_eq!(
            Name::from_authority(s),
            Ok(name),
            "{data:?} is not a fixed point"
        );
        // No host part of an authority keeps a port: only an IPv6 literal has a colon.
        assert!(!s.contains(&b':') || s.first() == Some(&b'['));
        for suffix in name.parent_suffixes() {
            assert!(s.ends_with(suffix.as_bytes()));
        }
    }
});
