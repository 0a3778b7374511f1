//! The Envoy glue, on the proxy-wasm Rust SDK: a root context per plugin configuration, an HTTP
//! context per request. It fetches the SNI and the authority, lets [`Policy::judge`] judge, acts
//! on the outcome and counts; everything that can be decided without Envoy is decided in the
//! host-agnostic modules.
//!
//! Per request Envoy enters the module four times (context creation, request headers, log,
//! deletion: the linker keeps no other callback, see `build.rs`). A request that passes costs
//! two host calls in `on_http_request_headers` (the SNI property and `:authority`; the latter
//! skipped when there is no SNI and `missing_sni` is `allow`; the former skipped for a pass when
//! the configuration is chain-bound, `this_listener`) and one in `on_log` (`response.flags`,
//! none with `response_flags: off`). `requests_checked` is added up in the module and handed to
//! Envoy on a one-second tick, or earlier whenever another sni-guard counter moves. The protocol
//! property is read only when `protocols` restricts the check, or to label a reply; the TLS
//! version only for a request without SNI under `missing_sni: reject`; the verdict is written to
//! filter state only for a refused request.
//!
//! Where the SDK can trap: its dispatcher panics on a context id Envoy never created, and its
//! host-call wrappers panic on a status the ABI does not allow for that call. With
//! `panic = "abort"` a panic is a Wasm trap (the SDK's panic hook first logs it at critical
//! level); Envoy then applies the filter's `failure_policy` (docs/hostile.md, tested with a
//! trapping module in tests/adversarial). sni-guard's own code does not panic: the trait
//! helpers that `unwrap` a host status are not used on the request path.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use log::{debug, error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config;
use crate::flags;
use crate::metrics;
use crate::policy::{FlagCounting, Mode, Outcome, Policy, Protocol, Scope};
use crate::reply;

proxy_wasm::main! {{
    // Installs the SDK's logger and panic hook; the level follows Envoy's from `on_configure` on.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Configuration::default()) });
}}

/// Property paths, one segment each: the SDK joins segments with NUL, so a path given whole
/// costs no joining.
const SNI_PATH: &str = "connection\0requested_server_name";
const PROTOCOL_PATH: &str = "request\0protocol";
/// Present (and not empty) on TLS connections only.
const TLS_VERSION_PATH: &str = "connection\0tls_version";
const RESPONSE_FLAGS_PATH: &str = "response\0flags";

/// How often batched counts reach Envoy, at the latest.
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

fn property(path: &str) -> Option<Vec<u8>> {
    hostcalls::get_property(vec![path]).ok().flatten()
}

fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// The host's clock. (The SDK's `Context::get_current_time` unwraps the host's status.)
fn now() -> SystemTime {
    hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
}

fn request_protocol() -> Option<Protocol> {
    property(PROTOCOL_PATH).and_then(|p| Protocol::from_envoy(&p))
}

/// Defines (or looks up: Envoy keys counters by name, and `on_configure` runs once per worker
/// and again on every update) a counter. `None`: the host refused it, the count is skipped.
fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn add(id: Option<u32>, by: u64) {
    if let Some(id) = id {
        // A lost count must never fail a request.
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

/// Counter ids, defined once per configuration.
struct Counters {
    checked: Option<u32>,
    without_sni: Option<u32>,
    misdirected: [Option<u32>; metrics::VERDICT_COUNTERS],
    would_misdirect: [Option<u32>; metrics::VERDICT_COUNTERS],
    flags: [Option<u32>; metrics::FLAG_COUNTERS],
}

impl Counters {
    /// The flag counters only when flags are counted: with `response_flags: off` the series
    /// are left to whoever counts them instead (Envoy's stats access logger, docs).
    fn define(flag_counting: FlagCounting) -> Counters {
        let mut c = Counters {
            checked: counter(metrics::REQUESTS_CHECKED),
            without_sni: counter(metrics::REQUESTS_WITHOUT_SNI),
            misdirected: [None; metrics::VERDICT_COUNTERS],
            would_misdirect: [None; metrics::VERDICT_COUNTERS],
            flags: [None; metrics::FLAG_COUNTERS],
        };
        for ((reason, protocol), (enforce, dry)) in metrics::verdict_labels()
            .zip(c.misdirected.iter_mut().zip(c.would_misdirect.iter_mut()))
        {
            *enforce = counter(&metrics::misdirected(reason, protocol));
            *dry = counter(&metrics::would_misdirect(reason, protocol));
        }
        if flag_counting == FlagCounting::Count {
            for (i, slot) in c.flags.iter_mut().enumerate() {
                *slot = counter(&metrics::response_flag(i));
            }
        }
        c
    }
}

/// What every request of one configuration shares.
struct State {
    policy: Policy,
    counters: Counters,
    reply_headers: Vec<u8>,
    /// `requests_checked` counts not yet handed to Envoy. A host call per request costs more
    /// than the whole policy decision; one per second costs nothing.
    pending_checked: Cell<u64>,
}

impl State {
    /// Hands the batched counts to Envoy. Called on every tick, and before any other counter is
    /// touched, so that whoever sees a 421 or flag counter move also sees the checks before it.
    fn flush(&self) {
        let pending = self.pending_checked.replace(0);
        if pending > 0 {
            add(self.counters.checked, pending);
        }
    }

    fn count(&self, id: Option<u32>) {
        self.flush();
        add(id, 1);
    }
}

impl Drop for State {
    /// A configuration replaced or removed hands over what it still holds (the last requests
    /// under it may finish after the update: they hold the `Rc`).
    fn drop(&mut self) {
        self.flush();
    }
}

/// The root context: one plugin configuration. Envoy may run several in one VM (filter chains
/// with different configurations sharing a `vm_id`); each request gets the configuration of the
/// root it was created under.
#[derive(Default)]
struct Configuration {
    state: Option<Rc<State>>,
}

impl Context for Configuration {}

impl RootContext for Configuration {
    fn on_configure(&mut self, size: usize) -> bool {
        let started = now();
        // Follow Envoy's level for the `wasm` component, so that dry-run debug lines are neither
        // formatted nor sent when Envoy would drop them. A level changed later through the admin
        // API applies from the next configuration.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        // No configuration at all means the defaults. One that Envoy announces but cannot hand
        // over fails the configuration: falling back to the defaults would silently turn a dry
        // run into enforce.
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(bytes) => bytes,
            Err(_) if size == 0 => None,
            Err(status) => {
                error!("sni-guard: the plugin configuration could not be read: {status:?}");
                return false;
            }
        };
        if size > 0 && bytes.is_none() {
            error!("sni-guard: the plugin configuration ({size} bytes) could not be read");
            return false;
        }
        let policy = match config::parse(bytes.as_deref().unwrap_or_default()) {
            Ok(policy) => policy,
            Err(e) => {
                error!("sni-guard: invalid configuration: {e}");
                return false;
            }
        };
        let scope = match &policy.scope {
            Scope::Strict => "strict host = SNI".to_owned(),
            Scope::Listeners(set) => format!(
                "{} listeners, {} hostnames",
                set.listener_count(),
                set.pattern_count()
            ),
        };
        let mode = match policy.mode {
            Mode::Enforce => "Enforce",
            Mode::DryRun => "DryRun",
            Mode::Off => "Off",
        };
        let counters = Counters::define(policy.response_flags);
        self.state = Some(Rc::new(State {
            policy,
            counters,
            reply_headers: reply::serialized_headers(),
            pending_checked: Cell::new(0),
        }));
        self.set_tick_period(FLUSH_PERIOD);
        // The load time (parse, compile, define counters) is reported so operators can see what
        // a large listener set costs each worker.
        let micros = now()
            .duration_since(started)
            .unwrap_or_default()
            .as_micros();
        info!("sni-guard: configured: mode {mode}, {scope}, loaded in {micros} us");
        true
    }

    fn on_tick(&mut self) {
        if let Some(state) = &self.state {
            state.flush();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            state: self.state.clone(),
        }))
    }
}

/// One request: the configuration it is judged by.
struct Request {
    state: Option<Rc<State>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if cfg!(feature = "bench-stage-callbacks") {
            return Action::Continue;
        }
        let Some(state) = &self.state else {
            return Action::Continue;
        };
        let policy = &state.policy;
        let mut protocol = None;
        if !policy.protocols.is_all() {
            protocol = request_protocol();
            // An unknown protocol is checked: better a 421 too many than a bypass.
            if protocol.is_some_and(|p| !policy.protocols.contains(p)) {
                return Action::Continue;
            }
        }
        let is_tls = || property(TLS_VERSION_PATH).is_some_and(|v| !v.is_empty());
        let (decision, sni) = policy.judge_chain(
            || property(SNI_PATH),
            is_tls,
            || request_header(":authority"),
        );
        state.pending_checked.set(state.pending_checked.get() + 1);
        // Chain-bound, a pass reads no SNI: such a request is on a named chain, which Envoy only
        // picks for a connection with SNI.
        if let Some(read) = &sni {
            if read.as_deref().is_none_or(<[u8]>::is_empty) {
                state.count(state.counters.without_sni);
            }
        }
        let sni = sni.flatten();
        let outcome = decision.outcome();
        let (Outcome::Reply(reason) | Outcome::Observe(reason)) = outcome else {
            return Action::Continue;
        };
        // The verdict where operators look: %FILTER_STATE(wasm.sni_guard:PLAIN)% in the access log.
        // One host call, for refused requests only.
        if let Some(verdict) = outcome.log_value() {
            verdict_state::set(verdict);
        }
        let index = metrics::verdict_index(reason, protocol.or_else(request_protocol));
        let answer = reply::for_reason(reason);
        if let Outcome::Observe(_) = outcome {
            state.count(state.counters.would_misdirect.get(index).copied().flatten());
            debug!(
                "sni-guard dry run: would answer {} ({}): sni \"{}\", authority \"{}\"",
                answer.status,
                reason.label(),
                // Escaped: both are the client's bytes.
                sni.as_deref().unwrap_or_default().escape_ascii(),
                request_header(":authority")
                    .unwrap_or_default()
                    .escape_ascii()
            );
            return Action::Continue;
        }
        if local_reply::send(
            answer.status,
            answer.details,
            answer.body.as_bytes(),
            &state.reply_headers,
        ) {
            // Counted once Envoy took the reply: the counter is of answers clients got.
            state.count(state.counters.misdirected.get(index).copied().flatten());
            Action::Pause
        } else {
            // Envoy refused the reply (the stream is already answered or reset).
            Action::Continue
        }
    }

    fn on_log(&mut self) {
        if cfg!(any(
            feature = "bench-stage-callbacks",
            feature = "bench-stage-check"
        )) {
            return;
        }
        let Some(state) = &self.state else {
            return;
        };
        if state.policy.response_flags == FlagCounting::Off {
            return;
        }
        // One host call; counters only when a flag is set (a successful request has none).
        let Some(mask) = property(RESPONSE_FLAGS_PATH).and_then(|v| flags::decode(&v)) else {
            return;
        };
        if mask == 0 {
            return;
        }
        state.flush();
        for index in flags::set_flags(mask) {
            add(state.counters.flags.get(index).copied().flatten(), 1);
        }
    }
}

/// The local reply with response-code details. The SDK's `send_http_response` always passes
/// empty details, and `%RESPONSE_CODE_DETAILS%` is how operators tell sni-guard's 421 from any
/// other; so this one host function is declared here.
mod local_reply {
    #[allow(clashing_extern_declarations)]
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }

    /// Sends the reply; `headers` is in the proxy-wasm map format. Returns whether Envoy
    /// accepted it.
    pub fn send(status: u32, details: &str, body: &[u8], headers: &[u8]) -> bool {
        // SAFETY: every pointer is to a live slice with its true length. -1: no gRPC status
        // override, Envoy maps the HTTP status for gRPC requests.
        unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            ) == 0
        }
    }
}

/// The verdict of a refused request, for the access log. Envoy keeps a property a Wasm filter
/// sets as the request's filter state object `wasm.<path>`, which an access-log format prints
/// with `%FILTER_STATE(wasm.sni_guard:PLAIN)%`. Declared here rather than called through
/// `hostcalls::set_property`, which panics (a trap, then `failure_policy`) on any status but
/// Ok: Envoy answers NotFound or BadArgument when it cannot keep the value, and a lost log field
/// must never fail a request.
mod verdict_state {
    /// The property path: one segment, so no NUL separators.
    const PATH: &str = "sni_guard";

    #[allow(clashing_extern_declarations)]
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
    }

    pub fn set(verdict: &str) {
        // SAFETY: both pointers are to live slices with their true lengths. The status is
        // ignored on purpose (see the module comment).
        unsafe {
            proxy_set_property(PATH.as_ptr(), PATH.len(), verdict.as_ptr(), verdict.len());
        }
    }
}
