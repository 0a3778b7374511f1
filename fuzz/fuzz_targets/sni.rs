//! Server-name and DNS-name normalisation: never panics; an accepted SNI is a DNS name without
//! brackets, port or trailing dot, and reads the same as an authority.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sni_guard::name::Name;

fuzz_target!(|data: &[u8]| {
    if let Ok(sni) = Name::from_sni(data) {
        assert!(data.last() != Some(&b'.') && data.first() != Some(&b'['));
        assert!(!sni.as_bytes().contains(&b':'));
        assert_eq!(Name::from_authority(data), Ok(sni), "{data:?}");
        assert_eq!(Name::from_dns(data), Ok(sni), "{data:?}");
        assert!(sni.as_bytes().eq_ignore_ascii_case(data));
    }
    if let Ok(dns) = Name::from_dns(data) {
        assert_eq!(Name::from_dns(dns.as_bytes()), Ok(dns));
    }
});
