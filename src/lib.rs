//! sni-guard: an Envoy proxy-wasm HTTP filter that answers **421 Misdirected Request** when a
//! request's `:authority` does not belong to the TLS server name (SNI) its connection was opened
//! for, and counts Envoy's response flags.
//!
//! The decision logic is host-agnostic and tested natively ([`name`], [`listeners`], [`policy`],
//! [`config`], [`flags`], [`metrics`]); the proxy-wasm glue (`filter`, on the proxy-wasm Rust SDK)
//! is compiled for `wasm32` only and tested inside real Envoy.

pub mod config;
pub mod flags;
pub mod listeners;
pub mod metrics;
pub mod name;
pub mod policy;
pub mod reply;

#[cfg(target_arch = "wasm32")]
mod filter;
