//! The configuration parser: never panics on any bytes; a configuration it accepts decides
//! requests without panicking, and an error always gives a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sni_guard::config;

fuzz_target!(|data: &[u8]| {
    match config::parse(data) {
        Ok(policy) => {
            for (sni, host) in [
                (&b"a.example.com"[..], &b"a.example.com"[..]),
                (b"a.example.com", b"B.example.com.:443"),
                (b"", b"x.test"),
                (b"x.test", b"[::1]:1"),
            ] {
                let _ = policy.decide(Some(sni), || Some(host));
            }
        }
        Err(e) => assert!(!e.reason.is_empty()),
    }
});
