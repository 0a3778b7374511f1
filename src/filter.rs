//! The proxy-wasm glue: fetch the SNI and the authority, let [`Policy::decide`] judge, act on the
//! verdict, count. Kept thin on purpose; everything that can be decided without Envoy is decided
//! in the host-agnostic modules.
//!
//! Host calls per request (each one crosses the VM boundary and costs on the order of a
//! microsecond): SNI property, `:authority` header (skipped when there is no SNI and
//! `missing_sni` is `allow`), one counter increment, and in `on_log` the `response.flags`
//! property. The protocol property is read only when `protocols` restricts the check, or to label
//! a 421.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::abi;
use crate::config;
use crate::flags;
use crate::metrics;
use crate::policy::{Mode, Pass, Policy, Protocol, Verdict};
use crate::reply;

/// Property paths, serialised as proxy-wasm expects (segments joined by NUL).
const SNI_PATH: &[u8] = b"connection\0requested_server_name";
const PROTOCOL_PATH: &[u8] = b"request\0protocol";
const RESPONSE_FLAGS_PATH: &[u8] = b"response\0flags";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counter ids, defined once per configuration. `None`: the host refused the definition, the
/// count is skipped.
struct Counters {
    checked: Option<u32>,
    without_sni: Option<u32>,
    misdirected: [Option<u32>; metrics::VERDICT_COUNTERS],
    would_misdirect: [Option<u32>; metrics::VERDICT_COUNTERS],
    flags: [Option<u32>; metrics::FLAG_COUNTERS],
}

impl Counters {
    fn define() -> Counters {
        let mut c = Counters {
            checked: abi::define_counter(metrics::REQUESTS_CHECKED),
            without_sni: abi::define_counter(metrics::REQUESTS_WITHOUT_SNI),
            misdirected: [None; metrics::VERDICT_COUNTERS],
            would_misdirect: [None; metrics::VERDICT_COUNTERS],
            flags: [None; metrics::FLAG_COUNTERS],
        };
        for ((reason, protocol), (enforce, dry)) in metrics::verdict_labels()
            .zip(c.misdirected.iter_mut().zip(c.would_misdirect.iter_mut()))
        {
            *enforce = abi::define_counter(&metrics::misdirected(reason, protocol));
            *dry = abi::define_counter(&metrics::would_misdirect(reason, protocol));
        }
        for (i, slot) in c.flags.iter_mut().enumerate() {
            *slot = abi::define_counter(&metrics::response_flag(i));
        }
        c
    }

    fn count(id: Option<u32>) {
        if let Some(id) = id {
            abi::increment(id);
        }
    }
}

/// What every request of one configuration shares.
struct State {
    policy: Policy,
    counters: Counters,
    reply_headers: Vec<u8>,
}

/// The root context: turns the plugin configuration into a [`State`].
#[derive(Default)]
struct Root {
    state: Option<Rc<State>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Follow Envoy's level for the `wasm` component, so that `debug!` lines (dry-run
        // verdicts) are neither formatted nor sent when Envoy would drop them anyway. Read at
        // configuration time: a level changed later through the admin API applies from the
        // next configuration.
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let started = self.get_current_time();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let policy = match config::parse(&bytes) {
            Ok(policy) => policy,
            Err(e) => {
                log::error!("sni-guard: invalid configuration: {e}");
                return false;
            }
        };
        let scope = match &policy.scope {
            crate::policy::Scope::Strict => "strict host = SNI".to_owned(),
            crate::policy::Scope::Listeners(set) => format!(
                "{} listeners, {} hostnames",
                set.listener_count(),
                set.pattern_count()
            ),
        };
        let mode = policy.mode;
        self.state = Some(Rc::new(State {
            policy,
            counters: Counters::define(),
            reply_headers: reply::serialized_headers(),
        }));
        // The load time (parse, compile, define counters) is reported so operators can see what
        // a large listener set costs each worker.
        let micros = self
            .get_current_time()
            .duration_since(started)
            .map_or(0, |d| d.as_micros());
        log::info!("sni-guard: configured: mode {mode:?}, {scope}, loaded in {micros} us");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = self.state.clone()?;
        Some(Box::new(Guard { state }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The per-request filter.
struct Guard {
    state: Rc<State>,
}

impl Context for Guard {}

fn request_protocol() -> Option<Protocol> {
    abi::get_property(PROTOCOL_PATH).and_then(|p| Protocol::from_envoy(&p))
}

impl HttpContext for Guard {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let state = &*self.state;
        let policy = &state.policy;
        let mut protocol = None;
        if !policy.protocols.is_all() {
            protocol = request_protocol();
            // An unknown protocol is checked: better a 421 too many than a bypass.
            if protocol.is_some_and(|p| !policy.protocols.contains(p)) {
                return Action::Continue;
            }
        }
        let sni = abi::get_property(SNI_PATH);
        let verdict = policy.decide(sni.as_deref(), || abi::get_request_header(b":authority"));
        Counters::count(state.counters.checked);
        let reason = match verdict {
            Verdict::Pass(Pass::NoSni) => {
                Counters::count(state.counters.without_sni);
                return Action::Continue;
            }
            Verdict::Pass(_) => return Action::Continue,
            Verdict::Misdirected(reason) => reason,
        };
        if sni.as_deref().is_none_or(<[u8]>::is_empty) {
            Counters::count(state.counters.without_sni);
        }
        let protocol = protocol.or_else(request_protocol);
        let index = metrics::verdict_index(reason, protocol);
        match policy.mode {
            Mode::DryRun => {
                Counters::count(state.counters.would_misdirect.get(index).copied().flatten());
                log::debug!(
                    "sni-guard dry run: would answer 421 ({}): sni {:?}",
                    reason.label(),
                    sni.as_deref().map(String::from_utf8_lossy)
                );
                Action::Continue
            }
            Mode::Enforce => {
                Counters::count(state.counters.misdirected.get(index).copied().flatten());
                if abi::send_local_response(
                    reply::STATUS,
                    reply::DETAILS,
                    reply::BODY.as_bytes(),
                    &state.reply_headers,
                ) {
                    Action::Pause
                } else {
                    // Envoy refused the reply (the stream is already answered or reset): let it be.
                    Action::Continue
                }
            }
        }
    }

    fn on_log(&mut self) {
        let Some(mask) = abi::get_property(RESPONSE_FLAGS_PATH).and_then(|v| flags::decode(&v))
        else {
            return;
        };
        if mask == 0 {
            return;
        }
        for index in flags::set_flags(mask) {
            Counters::count(self.state.counters.flags.get(index).copied().flatten());
        }
    }
}
