//! The plugin configuration: JSON in, a compiled [`Policy`] out, or an error that names the
//! field and the reason. Nothing is half-applied: either the whole configuration compiles or the
//! filter refuses it (and Envoy with it).

use std::fmt;

use serde::Deserialize;

use crate::listeners::{ListenerId, ListenerSet, Pattern};
use crate::policy::{FlagCounting, MissingSni, Mode, Policy, Protocol, Protocols, Scope};

/// The JSON document, as written by users. All fields are optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `enforce` (default) or `dry_run`.
    pub mode: Option<String>,
    /// Absent: strict equality of host and SNI. Present: listener groups (at least one, and not
    /// only the catch-all).
    pub listeners: Option<Vec<RawListener>>,
    /// `allow` (default) or `reject`.
    pub missing_sni: Option<String>,
    /// Absent: every protocol is checked.
    pub protocols: Option<Vec<String>>,
    /// The `name` of the listener whose filter chain this filter instance is configured on.
    /// Only for a filter configured per filter chain: Envoy has already picked that chain by the
    /// SNI, so the SNI need not be read (see [`Policy::judge_chain`]).
    pub this_listener: Option<String>,
    /// `count` (default) or `off`: count Envoy's response flags in `on_log`, or never read them.
    pub response_flags: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Shown in logs and errors only.
    pub name: Option<String>,
    /// Absent or empty: a catch-all listener.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// `enforce`, `dry_run` or `off`; absent: the top-level `mode`.
    pub mode: Option<String>,
}

/// A configuration that cannot be applied: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending field, such as `listeners[1].hostnames[0]`; `.` for the
    /// document itself.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn error(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses and compiles a configuration. Empty input (or only white space) means the defaults.
pub fn parse(bytes: &[u8]) -> Result<Policy, ConfigError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(Policy::default()),
        // serde would also read a struct from a JSON array (`["dry_run"]`): refuse that form.
        Some(b'{') => {}
        Some(_) => return Err(error(".", "the configuration must be a JSON object")),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends "at line L column C"; keep it, it helps with long documents.
        error(path, inner.to_string())
    })?;
    de.end().map_err(|e| error(".", e.to_string()))?;
    compile(raw)
}

/// Validates a parsed document and builds the lookup structures.
pub fn compile(raw: RawConfig) -> Result<Policy, ConfigError> {
    let mode = match raw.mode.as_deref() {
        None => Mode::Enforce,
        Some("off") => return Err(error("mode", TOP_LEVEL_OFF)),
        Some(m) => compile_mode(m, "mode", &[Mode::Enforce, Mode::DryRun])?,
    };
    let missing_sni = two_values(
        raw.missing_sni.as_deref(),
        "missing_sni",
        ("allow", MissingSni::Allow),
        ("reject", MissingSni::Reject),
    )?;
    let protocols = match raw.protocols {
        None => Protocols::ALL,
        Some(list) => compile_protocols(&list)?,
    };
    let response_flags = two_values(
        raw.response_flags.as_deref(),
        "response_flags",
        ("count", FlagCounting::Count),
        ("off", FlagCounting::Off),
    )?;
    let this_listener = match (&raw.this_listener, &raw.listeners) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(error(
                "this_listener",
                "needs `listeners`: it names the listener of this filter chain among them",
            ))
        }
        (Some(name), Some(listeners)) => {
            let index = listeners
                .iter()
                .position(|l| l.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    error(
                        "this_listener",
                        format!("no listener is named `{name}` in `listeners`"),
                    )
                })?;
            Some(ListenerId(
                u32::try_from(index).map_err(|_| error("listeners", "too many listeners"))?,
            ))
        }
    };
    let (scope, listener_modes) = match raw.listeners {
        None => (Scope::Strict, Vec::new()),
        Some(listeners) => {
            refuse_no_op_listeners(&listeners, missing_sni)?;
            let modes = listeners
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    l.mode
                        .as_deref()
                        .map(|m| compile_mode(m, &format!("listeners[{i}].mode"), &PER_LISTENER))
                        .transpose()
                })
                .collect::<Result<_, _>>()?;
            (Scope::Listeners(compile_listeners(&listeners)?), modes)
        }
    };
    Ok(Policy {
        mode,
        scope,
        missing_sni,
        protocols,
        listener_modes,
        this_listener,
        response_flags,
    })
}

/// A field with two spellings; absent means the first (the default).
fn two_values<T>(
    value: Option<&str>,
    field: &str,
    (default_name, default): (&str, T),
    (other_name, other): (&str, T),
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if v == default_name => Ok(default),
        Some(v) if v == other_name => Ok(other),
        Some(v) => Err(error(
            field,
            format!("unknown value `{v}`, expected `{default_name}` or `{other_name}`"),
        )),
    }
}

/// `off` everywhere is no protection: refused at the top level, where it would be a silent no-op.
const TOP_LEVEL_OFF: &str = "`off` is only allowed per listener (`listeners[].mode`); to turn \
sni-guard off everywhere, remove the filter";

/// The modes a listener may have; the top-level `mode` has all but `off`.
const PER_LISTENER: [Mode; 3] = [Mode::Enforce, Mode::DryRun, Mode::Off];

fn compile_mode(value: &str, field: &str, allowed: &[Mode]) -> Result<Mode, ConfigError> {
    allowed
        .iter()
        .copied()
        .find(|m| m.label() == value)
        .ok_or_else(|| {
            let mut names: Vec<String> =
                allowed.iter().map(|m| format!("`{}`", m.label())).collect();
            let last = names.pop().unwrap_or_default();
            let expected = if names.is_empty() {
                last
            } else {
                format!("{} or {last}", names.join(", "))
            };
            error(
                field,
                format!("unknown mode `{value}`, expected {expected}"),
            )
        })
}

/// Refuses listener sets under which no request could ever be judged misdirected: with no
/// listener every host is unknown and passes; with only the catch-all every name shares one
/// listener. Both would look like protection and be none. The catch-all alone still means
/// something with `missing_sni: reject` (SNI required, any host on any connection): allowed.
fn refuse_no_op_listeners(
    listeners: &[RawListener],
    missing_sni: MissingSni,
) -> Result<(), ConfigError> {
    let hint = "omit `listeners` for strict host = SNI, or list the hostnames of each listener";
    match listeners {
        [] => Err(error(
            "listeners",
            format!("an empty list turns the check off (every host would pass); {hint}"),
        )),
        [only] if missing_sni == MissingSni::Allow && is_catch_all(only) => Err(error(
            "listeners",
            format!(
                "a catch-all as the only listener puts every name in one listener, so no \
                 request is ever misdirected; {hint}"
            ),
        )),
        _ => Ok(()),
    }
}

fn is_catch_all(listener: &RawListener) -> bool {
    listener.hostnames.iter().all(|h| h == "*")
}

fn compile_protocols(list: &[String]) -> Result<Protocols, ConfigError> {
    if list.is_empty() {
        return Err(error(
            "protocols",
            "must name at least one protocol (omit the field to check all)",
        ));
    }
    let mut set = Protocols::NONE;
    for (i, p) in list.iter().enumerate() {
        let protocol = Protocol::from_envoy(p.as_bytes()).ok_or_else(|| {
            error(
                format!("protocols[{i}]"),
                format!("unknown protocol `{p}`, expected `HTTP/1.1`, `HTTP/2` or `HTTP/3`"),
            )
        })?;
        set = set.with(protocol);
    }
    Ok(set)
}

fn compile_listeners(listeners: &[RawListener]) -> Result<ListenerSet, ConfigError> {
    let mut set = ListenerSet::new();
    let mut names = rustc_hash::FxHashSet::default();
    for (i, listener) in listeners.iter().enumerate() {
        let id =
            ListenerId(u32::try_from(i).map_err(|_| error("listeners", "too many listeners"))?);
        if let Some(name) = &listener.name {
            if !names.insert(name.as_str()) {
                return Err(error(
                    format!("listeners[{i}].name"),
                    format!("listener name `{name}` is used twice"),
                ));
            }
        }
        let patterns = if listener.hostnames.is_empty() {
            vec![Ok(Pattern::CatchAll)]
        } else {
            listener
                .hostnames
                .iter()
                .map(|h| Pattern::parse(h))
                .collect()
        };
        for (j, pattern) in patterns.into_iter().enumerate() {
            let field = if listener.hostnames.is_empty() {
                format!("listeners[{i}].hostnames")
            } else {
                format!("listeners[{i}].hostnames[{j}]")
            };
            let raw = listener.hostnames.get(j).map_or("*", String::as_str);
            let pattern =
                pattern.map_err(|e| error(&field, format!("invalid hostname `{raw}`: {e}")))?;
            set.insert(id, pattern).map_err(|dup| {
                let first = listeners
                    .get(dup.first.0 as usize)
                    .and_then(|l| l.name.as_deref())
                    .map_or_else(
                        || format!("listeners[{}]", dup.first.0),
                        |n| format!("listener `{n}`"),
                    );
                let what = if dup.pattern == Pattern::CatchAll {
                    "a second catch-all listener (no hostnames or `*`)".to_owned()
                } else {
                    format!("hostname `{}`", dup.pattern)
                };
                error(
                    &field,
                    format!(
                        "{what} already belongs to {first}; a name may belong to one listener only"
                    ),
                )
            })?;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn empty_means_defaults() {
        for input in ["", "  \n", "{}"] {
            let p = parse(input.as_bytes()).unwrap();
            assert_eq!(p.mode, Mode::Enforce);
            assert!(matches!(p.scope, Scope::Strict));
            assert_eq!(p.missing_sni, MissingSni::Allow);
            assert!(p.protocols.is_all());
        }
    }

    #[test]
    fn full_example_compiles() {
        let p = parse(
            br#"{
              "mode": "dry_run",
              "listeners": [
                {"name": "catch-all"},
                {"name": "second", "hostnames": ["second-example.org"]},
                {"hostnames": ["*.wildcard.org"]},
                {"hostnames": ["fourth-example.wildcard.org", "other.example.net"]}
              ],
              "missing_sni": "reject",
              "protocols": ["HTTP/2"]
            }"#,
        )
        .unwrap();
        assert_eq!(p.mode, Mode::DryRun);
        assert_eq!(p.missing_sni, MissingSni::Reject);
        assert!(p.protocols.contains(Protocol::Http2) && !p.protocols.is_all());
        match p.scope {
            Scope::Listeners(set) => {
                assert_eq!(set.listener_count(), 4);
                assert_eq!(set.pattern_count(), 4);
            }
            Scope::Strict => panic!("expected listeners"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"mode": "audit"}"#,
                "mode",
                "unknown mode `audit`, expected `enforce` or `dry_run`",
            ),
            (r#"{"modes": "enforce"}"#, "modes", "unknown field `modes`"),
            (
                r#"{"missing_sni": true}"#,
                "missing_sni",
                "invalid type: boolean `true`, expected a string",
            ),
            (
                r#"{"missing_sni": "deny"}"#,
                "missing_sni",
                "unknown value `deny`, expected `allow` or `reject`",
            ),
            (
                r#"{"protocols": ["HTTP/2", "h2c"]}"#,
                "protocols[1]",
                "unknown protocol `h2c`",
            ),
            (r#"{"protocols": []}"#, "protocols", "at least one"),
            (
                r#"{"listeners": [{"hostnames": ["a.*.com"]}]}"#,
                "listeners[0].hostnames[0]",
                "`*` is only allowed",
            ),
            (
                r#"{"listeners": [{"hostnames": ["ok.com", "a..com"]}]}"#,
                "listeners[0].hostnames[1]",
                "empty label",
            ),
            (
                r#"{"listeners": [{"hostnames": ["b\u00fccher.de"]}]}"#,
                "listeners[0].hostnames[0]",
                "punycode",
            ),
            (
                r#"{"listeners": [{"name": "one", "hostnames": ["a.com"]}, {"hostnames": ["A.com"]}]}"#,
                "listeners[1].hostnames[0]",
                "hostname `a.com` already belongs to listener `one`",
            ),
            (
                r#"{"listeners": [{}, {"hostnames": ["*"]}]}"#,
                "listeners[1].hostnames[0]",
                "second catch-all",
            ),
            (
                r#"{"listeners": [{"name": "x"}, {"name": "x", "hostnames": ["a"]}]}"#,
                "listeners[1].name",
                "used twice",
            ),
            (
                r#"{"listeners": [{"host": ["a"]}]}"#,
                "listeners[0].host",
                "unknown field `host`",
            ),
            (r#"{"listeners": []}"#, "listeners", "an empty list"),
            (
                r#"{"listeners": [{}]}"#,
                "listeners",
                "catch-all as the only",
            ),
            (
                r#"{"listeners": [{"name": "all", "hostnames": ["*"]}]}"#,
                "listeners",
                "catch-all as the only",
            ),
            (
                r#"{"mode": "off", "listeners": [{"hostnames": ["a"]}]}"#,
                "mode",
                "only allowed per listener",
            ),
            (
                r#"{"listeners": [{"hostnames": ["a"], "mode": "audit"}]}"#,
                "listeners[0].mode",
                "unknown mode `audit`, expected `enforce`, `dry_run` or `off`",
            ),
            (r#"{"mode": "enforce"} x"#, ".", "trailing characters"),
            (
                r#"{"this_listener": "a"}"#,
                "this_listener",
                "needs `listeners`",
            ),
            (
                r#"{"listeners": [{"name": "a", "hostnames": ["a.com"]}, {"hostnames": ["b.com"]}], "this_listener": "b"}"#,
                "this_listener",
                "no listener is named `b`",
            ),
            (
                r#"{"response_flags": "none"}"#,
                "response_flags",
                "unknown value `none`, expected `count` or `off`",
            ),
            (
                r#"{"response_flags": false}"#,
                "response_flags",
                "invalid type: boolean `false`",
            ),
            (r#"[1]"#, ".", "must be a JSON object"),
            (r#"["dry_run"]"#, ".", "must be a JSON object"),
            (r#"{"mode": "#, "mode", "EOF"),
        ];
        for (json, field, reason) in cases {
            let e = err(json);
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
    }

    #[test]
    fn per_listener_modes() {
        let p = parse(
            br#"{"mode": "dry_run", "listeners": [
                {"hostnames": ["a.example.com"], "mode": "enforce"},
                {"hostnames": ["b.example.com"], "mode": "off"},
                {"hostnames": ["c.example.com"]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            p.listener_modes,
            vec![Some(Mode::Enforce), Some(Mode::Off), None]
        );
        assert_eq!(p.mode_of(Some(ListenerId(1))), Mode::Off);
        assert_eq!(p.mode_of(Some(ListenerId(2))), Mode::DryRun);
        assert_eq!(p.mode_of(None), Mode::DryRun);
    }

    #[test]
    fn chain_bound_and_flag_counting() {
        let p = parse(
            br#"{"listeners": [{"name": "a", "hostnames": ["a.com"]}, {"name": "b", "hostnames": ["b.com"]}],
                 "this_listener": "b", "response_flags": "off"}"#,
        )
        .unwrap();
        assert_eq!(p.this_listener, Some(ListenerId(1)));
        assert_eq!(p.response_flags, FlagCounting::Off);
        let p = parse(br#"{"response_flags": "count"}"#).unwrap();
        assert_eq!(p.response_flags, FlagCounting::Count);
        assert!(p.this_listener.is_none());
        assert_eq!(parse(b"{}").unwrap().response_flags, FlagCounting::Count);
    }

    #[test]
    fn a_lone_catch_all_is_accepted_when_it_requires_sni() {
        // SNI required, any host on any connection: it refuses something, so it is allowed.
        let p = parse(br#"{"listeners": [{}], "missing_sni": "reject"}"#).unwrap();
        assert_eq!(p.missing_sni, MissingSni::Reject);
        // A catch-all beside other listeners is the usual Gateway layout.
        parse(br#"{"listeners": [{}, {"hostnames": ["a.example.com"]}]}"#).unwrap();
    }

    #[test]
    fn ten_thousand_hostnames_compile() {
        let listeners: Vec<String> = (0..10_000)
            .map(|i| format!(r#"{{"hostnames": ["host-{i}.example.com", "*.w{i}.example.org"]}}"#))
            .collect();
        let json = format!(r#"{{"listeners": [{}]}}"#, listeners.join(","));
        let p = parse(json.as_bytes()).unwrap();
        match p.scope {
            Scope::Listeners(set) => assert_eq!(set.pattern_count(), 20_000),
            Scope::Strict => panic!("expected listeners"),
        }
    }
}
