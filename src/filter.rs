//! The Envoy glue: fetch the SNI and the authority, let [`Policy::decide`] judge, act on the
//! verdict, count. Everything that can be decided without Envoy is decided in the host-agnostic
//! modules; this one is about doing the Envoy side cheaply (see bench/RESULTS.md for the
//! measurements behind each choice).
//!
//! A request that passes costs, besides the VM entries themselves (context creation, request
//! headers, log, deletion; see `abi`): two host calls in `on_request_headers` (the SNI property
//! and the `:authority` header; the latter skipped when there is no SNI and `missing_sni` is
//! `allow`) and one in `on_log` (`response.flags`). Nothing is formatted; the two values the host
//! returns are the only allocations. The `requests_checked` counter is added up in the module
//! and handed to Envoy on a one-second tick, or earlier whenever another sni-guard counter is
//! touched. The protocol property is read only when `protocols` restricts the check, or to label
//! a 421.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use crate::abi::{self, Action, LogLevel};
use crate::config;
use crate::flags;
use crate::listeners::FxHasher;
use crate::metrics;
use crate::policy::{Outcome, Policy, Protocol, Scope};
use crate::reply;

/// Property paths, serialised as proxy-wasm expects (segments joined by NUL).
const SNI_PATH: &[u8] = b"connection\0requested_server_name";
const PROTOCOL_PATH: &[u8] = b"request\0protocol";
/// Present (and not empty) on TLS connections only.
const TLS_VERSION_PATH: &[u8] = b"connection\0tls_version";
const RESPONSE_FLAGS_PATH: &[u8] = b"response\0flags";

/// How often batched counts reach Envoy, at the latest.
const FLUSH_PERIOD_MS: u32 = 1000;

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
}

fn count(id: Option<u32>) {
    if let Some(id) = id {
        abi::increment(id, 1);
    }
}

/// What every request of one configuration shares.
struct State {
    policy: Policy,
    counters: Counters,
    reply_headers: Vec<u8>,
    /// Envoy logs `wasm` debug lines: dry-run verdicts are worth formatting.
    debug: bool,
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
            if let Some(id) = self.counters.checked {
                abi::increment(id, pending);
            }
        }
    }

    fn count(&self, id: Option<u32>) {
        self.flush();
        count(id);
    }
}

/// One root context: one plugin configuration. Envoy may run several in one VM (filter chains
/// with different configurations sharing a `vm_id`).
struct Root {
    id: u32,
    state: Option<Rc<State>>,
}

type FxMap<V> = HashMap<u32, V, BuildHasherDefault<FxHasher>>;

thread_local! {
    /// Root contexts in creation order. Almost always exactly one.
    static ROOTS: RefCell<Vec<Root>> = const { RefCell::new(Vec::new()) };
    /// HTTP context -> root context, kept only for contexts created while more than one root
    /// existed. Any other context belongs to the first root: with a single configuration (the
    /// common case) the request path does no bookkeeping at all.
    static PARENTS: RefCell<FxMap<u32>> = RefCell::new(FxMap::default());
}

/// The configuration an HTTP context runs under. The `Rc` is cloned out so that no `RefCell`
/// borrow is held across host calls (a host call that re-entered the module must not find the
/// state borrowed).
fn state_of(context_id: u32) -> Option<Rc<State>> {
    ROOTS.with(|roots| {
        let roots = roots.borrow();
        let root = match roots.as_slice() {
            [only] => only,
            [first, ..] => {
                let parent = PARENTS.with(|p| p.borrow().get(&context_id).copied());
                parent
                    .and_then(|id| roots.iter().find(|r| r.id == id))
                    .unwrap_or(first)
            }
            [] => return None,
        };
        root.state.clone()
    })
}

pub fn on_context_create(context_id: u32, parent_id: u32) {
    if parent_id == 0 {
        ROOTS.with(|roots| {
            roots.borrow_mut().push(Root {
                id: context_id,
                state: None,
            })
        });
        return;
    }
    let several = ROOTS.with(|roots| roots.borrow().len() > 1);
    if several {
        PARENTS.with(|p| p.borrow_mut().insert(context_id, parent_id));
    }
}

pub fn on_delete(context_id: u32) {
    let root = ROOTS.with(|roots| {
        let mut roots = roots.borrow_mut();
        let i = roots.iter().position(|r| r.id == context_id)?;
        Some(roots.remove(i))
    });
    if let Some(root) = root {
        if let Some(state) = root.state {
            state.flush();
        }
        return;
    }
    PARENTS.with(|p| {
        let mut p = p.borrow_mut();
        if !p.is_empty() {
            p.remove(&context_id);
        }
    });
}

pub fn on_tick(root_id: u32) {
    let state = ROOTS.with(|roots| {
        let roots = roots.borrow();
        roots
            .iter()
            .find(|r| r.id == root_id)
            .and_then(|r| r.state.clone())
    });
    if let Some(state) = state {
        state.flush();
    }
}

pub fn on_configure(root_id: u32, size: usize) -> bool {
    let started = abi::now_nanos();
    // Follow Envoy's level for the `wasm` component, so that dry-run debug lines are neither
    // formatted nor sent when Envoy would drop them. Read at configuration time: a level changed
    // later through the admin API applies from the next configuration.
    let debug = abi::log_level().is_some_and(|level| level <= LogLevel::Debug as u32);
    // No configuration at all means the defaults; one that Envoy announced but cannot hand over
    // fails the configuration: falling back to the defaults would turn a dry run into enforce.
    let bytes = if size == 0 {
        None
    } else {
        match abi::plugin_configuration(size) {
            Some(bytes) => Some(bytes),
            None => {
                abi::log(
                    LogLevel::Error,
                    "sni-guard: the plugin configuration could not be read",
                );
                return false;
            }
        }
    };
    let policy = match config::parse(bytes.as_deref().unwrap_or_default()) {
        Ok(policy) => policy,
        Err(e) => {
            abi::log(
                LogLevel::Error,
                &format!("sni-guard: invalid configuration: {e}"),
            );
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
    let mode = policy.mode;
    let state = Rc::new(State {
        policy,
        counters: Counters::define(),
        reply_headers: reply::serialized_headers(),
        debug,
        pending_checked: Cell::new(0),
    });
    let old = ROOTS.with(|roots| {
        let mut roots = roots.borrow_mut();
        let root = match roots.iter().position(|r| r.id == root_id) {
            Some(i) => roots.get_mut(i),
            None => {
                roots.push(Root {
                    id: root_id,
                    state: None,
                });
                roots.last_mut()
            }
        };
        root.and_then(|r| r.state.replace(state))
    });
    if let Some(old) = old {
        old.flush();
    }
    abi::set_tick_period(FLUSH_PERIOD_MS);
    // The load time (parse, compile, define counters) is reported so operators can see what a
    // large listener set costs each worker.
    let micros = abi::now_nanos().saturating_sub(started) / 1000;
    abi::log(
        LogLevel::Info,
        &format!("sni-guard: configured: mode {mode:?}, {scope}, loaded in {micros} us"),
    );
    true
}

fn request_protocol() -> Option<Protocol> {
    abi::get_property(PROTOCOL_PATH).and_then(|p| Protocol::from_envoy(&p))
}

pub fn on_request_headers(context_id: u32) -> Action {
    let Some(state) = state_of(context_id) else {
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
    let sni = abi::get_property(SNI_PATH);
    let is_tls = || abi::get_property(TLS_VERSION_PATH).is_some_and(|v| !v.is_empty());
    let decision = policy.judge(sni.as_deref(), is_tls, || {
        abi::get_request_header(b":authority")
    });
    state.pending_checked.set(state.pending_checked.get() + 1);
    if sni.as_deref().is_none_or(<[u8]>::is_empty) {
        state.count(state.counters.without_sni);
    }
    let (reason, enforce) = match decision.outcome() {
        Outcome::Pass => return Action::Continue,
        Outcome::Reply(reason) => (reason, true),
        Outcome::Observe(reason) => (reason, false),
    };
    let index = metrics::verdict_index(reason, protocol.or_else(request_protocol));
    if !enforce {
        state.count(state.counters.would_misdirect.get(index).copied().flatten());
        if state.debug {
            let authority = abi::get_request_header(b":authority");
            abi::log(
                LogLevel::Debug,
                &format!(
                    "sni-guard dry run: would answer {} ({}): sni {:?}, authority {:?}",
                    reply::for_reason(reason).status,
                    reason.label(),
                    sni.as_deref().map(String::from_utf8_lossy),
                    authority.as_deref().map(String::from_utf8_lossy),
                ),
            );
        }
        return Action::Continue;
    }
    let answer = reply::for_reason(reason);
    if abi::send_local_response(
        answer.status,
        answer.details,
        answer.body.as_bytes(),
        &state.reply_headers,
    ) {
        // Counted only once Envoy took the reply: the counter is of answers clients got.
        state.count(state.counters.misdirected.get(index).copied().flatten());
        Action::Pause
    } else {
        // Envoy refused the reply (the stream is already answered or reset): let it be.
        Action::Continue
    }
}

pub fn on_log(context_id: u32) {
    // One host call; counters only when a flag is set (a successful request has none).
    let Some(mask) = abi::get_property(RESPONSE_FLAGS_PATH).and_then(|v| flags::decode(&v)) else {
        return;
    };
    if mask == 0 {
        return;
    }
    let Some(state) = state_of(context_id) else {
        return;
    };
    state.flush();
    for index in flags::set_flags(mask) {
        count(state.counters.flags.get(index).copied().flatten());
    }
}
