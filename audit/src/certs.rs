//! Certificates given on the command line: which names they cover.
//!
//! A browser reuses a connection for another host when the certificate on it is valid for that
//! host (RFC 7540 §9.1.1), so the subject alternative names, not the configuration, decide what
//! can be coalesced. Names are matched as RFC 6125 §6.4.3 and the CA/Browser Forum rules say
//! browsers do: case-insensitive, a `*` only as the whole leftmost label, covering exactly one
//! label. The subject CN is ignored, as browsers ignore it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use sni_guard::listeners::Pattern;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::model::CertRef;

/// One subject alternative name a browser would honour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    /// A full DNS name or an IP address, lowercase, no trailing dot.
    Exact(String),
    /// `*.suffix`: any single label in front of `suffix`.
    Wildcard(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Exact(s) => f.write_str(s),
            San::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl San {
    /// Reads a dNSName entry; partial wildcards (`f*.example.com`) and wildcards below the
    /// leftmost label are honoured by no current browser, so they cover nothing.
    pub fn from_dns(raw: &str) -> Option<San> {
        let name = raw.trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = name.strip_prefix("*.") {
            if suffix.contains('*') || suffix.is_empty() {
                return None;
            }
            return Some(San::Wildcard(suffix.to_owned()));
        }
        if name.is_empty() || name.contains('*') {
            return None;
        }
        Some(San::Exact(name))
    }

    /// The names both this SAN and a configured host pattern match, written as a name or a
    /// pattern; `None` when no name is in both. Configured wildcards (`*.suffix`) take one or
    /// more labels, a SAN wildcard exactly one.
    pub fn overlap(&self, host: &Pattern) -> Option<String> {
        match (self, host) {
            (San::Exact(s), Pattern::Exact(h)) => (s == h).then(|| h.clone()),
            (San::Exact(s), Pattern::Wildcard(suffix)) => {
                is_strictly_under(s, suffix).then(|| s.clone())
            }
            (San::Exact(s), Pattern::CatchAll) => Some(s.clone()),
            (San::Wildcard(suffix), Pattern::Exact(h)) => h
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .filter(|label| !label.is_empty() && !label.contains('.'))
                .map(|_| h.clone()),
            (San::Wildcard(s), Pattern::Wildcard(h)) => {
                // `x.s` is under `*.h` when `s` is `h` or lies below it.
                (s == h || is_strictly_under(s, h)).then(|| format!("*.{s}"))
            }
            (San::Wildcard(s), Pattern::CatchAll) => Some(format!("*.{s}")),
        }
    }
}

/// `name` has at least one label in front of `suffix`.
fn is_strictly_under(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .and_then(|front| front.strip_suffix('.'))
        .is_some_and(|front| !front.is_empty())
}

/// A certificate read from a file: where, and the names it covers.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub path: PathBuf,
    pub sans: Vec<San>,
}

/// Certificates by the reference that the gateways use to name them.
pub type CertStore = BTreeMap<CertRef, CertInfo>;

/// Parses a `--cert` key: `namespace/name` is a Secret, an absolute path a file mounted in the
/// gateway pod (Istio `serverCertificate`).
pub fn parse_key(key: &str) -> Result<CertRef, String> {
    if key.starts_with('/') {
        return Ok(CertRef::File { path: key.into() });
    }
    match key.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(CertRef::Secret {
                namespace: namespace.into(),
                name: name.into(),
            })
        }
        _ => Err(format!(
            "certificate key `{key}`: expected `namespace/secret-name` or an absolute file path"
        )),
    }
}

/// Reads the leaf (first) certificate of a PEM file and its names.
pub fn load_pem(path: &Path) -> Result<CertInfo, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pem = Pem::iter_from_buffer(&bytes)
        .next()
        .ok_or_else(|| format!("{}: no PEM block found", path.display()))?
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!(
            "{}: first PEM block is `{}`, expected `CERTIFICATE`",
            path.display(),
            pem.label
        ));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("{}: invalid certificate: {e}", path.display()))?;
    let mut sans = Vec::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| format!("{}: invalid subjectAltName: {e}", path.display()))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            let san = match name {
                GeneralName::DNSName(dns) => San::from_dns(dns),
                GeneralName::IPAddress(ip) => ip_text(ip).map(San::Exact),
                _ => None,
            };
            if let Some(san) = san {
                if !sans.contains(&san) {
                    sans.push(san);
                }
            }
        }
    }
    Ok(CertInfo {
        path: path.to_owned(),
        sans,
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes {
        [a, b, c, d] => Some(format!("{a}.{b}.{c}.{d}")),
        _ => None,
    }
}

/// Reads `DIR/<namespace>/<secret>.pem` (or `.crt`) files into Secret references.
pub fn load_dir(dir: &Path, store: &mut CertStore) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut namespaces: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.path().is_dir() {
            namespaces.push(entry.path());
        }
    }
    namespaces.sort();
    for ns_dir in namespaces {
        let namespace = file_name(&ns_dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&ns_dir)
            .map_err(|e| format!("{}: {e}", ns_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pem" | "crt")))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let info = load_pem(&file)?;
            store.insert(
                CertRef::Secret {
                    namespace: namespace.clone(),
                    name,
                },
                info,
            );
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    fn san(s: &str) -> San {
        San::from_dns(s).unwrap()
    }

    #[test]
    fn wildcard_san_covers_one_label() {
        let w = san("*.Example.com.");
        assert_eq!(w, San::Wildcard("example.com".into()));
        assert_eq!(
            w.overlap(&p("a.example.com")).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(w.overlap(&p("a.b.example.com")), None);
        assert_eq!(w.overlap(&p("example.com")), None);
        assert_eq!(w.overlap(&p("aexample.com")), None);
        assert_eq!(
            w.overlap(&p("*.example.com")).as_deref(),
            Some("*.example.com")
        );
        // `*.b.example.com` hosts have two labels in front of example.com: not covered.
        assert_eq!(w.overlap(&p("*.b.example.com")), None);
        assert_eq!(w.overlap(&p("*")).as_deref(), Some("*.example.com"));
        // A SAN `*.b.example.com` names lie under the host wildcard `*.example.com`.
        assert_eq!(
            san("*.b.example.com")
                .overlap(&p("*.example.com"))
                .as_deref(),
            Some("*.b.example.com")
        );
    }

    #[test]
    fn exact_san() {
        let e = san("a.example.com");
        assert_eq!(
            e.overlap(&p("A.example.com")).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            e.overlap(&p("*.example.com")).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(e.overlap(&p("*.a.example.com")), None);
        assert_eq!(e.overlap(&p("*")).as_deref(), Some("a.example.com"));
        assert_eq!(e.overlap(&p("b.example.com")), None);
    }

    #[test]
    fn unusable_sans() {
        for bad in ["f*.example.com", "a.*.example.com", "*.", "*", ""] {
            assert_eq!(San::from_dns(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(
            parse_key("istio-system/wild").unwrap(),
            CertRef::Secret {
                namespace: "istio-system".into(),
                name: "wild".into()
            }
        );
        assert_eq!(
            parse_key("/etc/istio/tls.crt").unwrap(),
            CertRef::File {
                path: "/etc/istio/tls.crt".into()
            }
        );
        for bad in ["wild", "a/b/c", "ns/", "ns/a/"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }
}
