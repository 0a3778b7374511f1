//! The cheapest proxy-wasm HTTP filter there is: one HTTP context per request that implements no
//! callback, so every hook answers with the SDK's defaults. Benchmarked next to sni-guard, it
//! shows what Envoy's Wasm machinery costs before a filter does any work of its own.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Empty) });
}}

/// The per-request context: no state, no callbacks.
struct Empty;

impl Context for Empty {}

impl HttpContext for Empty {}
