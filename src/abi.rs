//! The proxy-wasm ABI (0.2.1), spoken directly: the host functions sni-guard imports and the
//! callbacks it exports. No SDK.
//!
//! Why no SDK: Envoy calls into the module only for the callbacks the module exports (a missing
//! `proxy_on_response_headers` export means Envoy never enters the VM for response headers).
//! The Rust SDK exports every callback of the ABI, so each request paid VM entries for response
//! headers, each body chunk, trailers and `on_done` that sni-guard has no use for, plus the SDK's
//! per-context bookkeeping (a boxed trait object and hash-map lookups per callback). Here the
//! module exports what it uses and nothing else; per request Envoy enters it for context
//! creation, request headers, the log and deletion only.
//!
//! The SDK's wrappers also panic on statuses they do not expect; these return `Option`/`bool`.
//! Statuses are read as plain `u32` (an out-of-range value in a Rust enum would be undefined
//! behaviour).

use std::mem::MaybeUninit;
use std::ptr::{null_mut, NonNull};

use crate::filter;

// The `bench-stage-*` features build the partial filters of the benchmark's cost breakdown
// (`make bench-stages`, docs/bench.md); release builds enable none of them.
// `bench-stage-bare`: no per-request callback exported (Envoy never enters the module for a
// request); `bench-stage-callbacks`: the per-request callbacks are entered and return at once;
// `bench-stage-check`: the check runs, the response flags are not read.

const OK: u32 = 0;
/// proxy-wasm map type of the request headers.
const REQUEST_HEADERS: u32 = 0;
/// proxy-wasm buffer type of the plugin configuration.
const PLUGIN_CONFIGURATION: u32 = 7;
/// proxy-wasm metric type of a counter.
const COUNTER: u32 = 0;

/// proxy-wasm log levels.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Error = 4,
}

/// Results of the header callbacks.
#[derive(Clone, Copy)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
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
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
}

// ---- exports: the callbacks Envoy calls -------------------------------------------------------

/// Marks the ABI version this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host's allocator for values it returns (header values, properties, the configuration).
/// Each buffer is a boxed slice of exactly `size` bytes, taken back by [`HostBytes`].
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let buffer: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(size);
    Box::into_raw(buffer).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[cfg_attr(not(feature = "bench-stage-bare"), no_mangle)]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
    filter::on_context_create(context_id, parent_context_id);
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_context_id: u32, configuration_size: usize) -> u32 {
    u32::from(filter::on_configure(root_context_id, configuration_size))
}

#[cfg_attr(not(feature = "bench-stage-bare"), no_mangle)]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _headers: usize,
    _end_of_stream: u32,
) -> u32 {
    if cfg!(feature = "bench-stage-callbacks") {
        return Action::Continue as u32;
    }
    filter::on_request_headers(context_id) as u32
}

#[cfg_attr(not(feature = "bench-stage-bare"), no_mangle)]
pub extern "C" fn proxy_on_log(context_id: u32) {
    if cfg!(any(
        feature = "bench-stage-callbacks",
        feature = "bench-stage-check"
    )) {
        return;
    }
    filter::on_log(context_id);
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    filter::on_tick(root_context_id);
}

#[cfg_attr(not(feature = "bench-stage-bare"), no_mangle)]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    filter::on_delete(context_id);
}

// ---- imports: what the filter asks of Envoy ---------------------------------------------------

/// A value the host wrote into a buffer from [`proxy_on_memory_allocate`]; freed on drop.
pub struct HostBytes {
    data: NonNull<u8>,
    len: usize,
}

impl HostBytes {
    fn take(status: u32, data: *mut u8, len: usize) -> Option<HostBytes> {
        if status != OK {
            return None;
        }
        match NonNull::new(data) {
            Some(data) => Some(HostBytes { data, len }),
            // A success without a buffer: an empty value.
            None => Some(HostBytes {
                data: NonNull::dangling(),
                len: 0,
            }),
        }
    }
}

impl std::ops::Deref for HostBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `data` is the start of `len` bytes the host initialised (or dangling with
        // `len == 0`), alive until `drop`.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for HostBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for HostBytes {
    fn drop(&mut self) {
        if self.len == 0 {
            // Zero-sized boxes own no memory; a dangling pointer must not be freed.
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(self.data.as_ptr(), self.len);
        // SAFETY: the host obtained the buffer from `proxy_on_memory_allocate(len)`, which
        // leaked a `Box<[MaybeUninit<u8>]>` of exactly `len` bytes.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Reads a property by its serialised path (segments separated by NUL bytes).
pub fn get_property(path: &[u8]) -> Option<HostBytes> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers to live locals and a static path.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    HostBytes::take(status, data, size)
}

/// Reads one request header as bytes (never assumed to be UTF-8).
pub fn get_request_header(name: &[u8]) -> Option<HostBytes> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as for `get_property`.
    let status = unsafe {
        proxy_get_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    HostBytes::take(status, data, size)
}

/// The plugin configuration (the filter's JSON).
pub fn plugin_configuration(size: usize) -> Option<HostBytes> {
    let mut data = null_mut();
    let mut len = 0;
    // SAFETY: as for `get_property`.
    let status =
        unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) };
    HostBytes::take(status, data, len)
}

/// Sends a local reply with response-code details. `headers` is in the proxy-wasm map format.
/// Returns whether Envoy accepted it.
pub fn send_local_response(status: u32, details: &str, body: &[u8], headers: &[u8]) -> bool {
    // SAFETY: all pointers are to live slices with their true lengths. -1: no gRPC status
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
        ) == OK
    }
}

/// Defines (or looks up: Envoy keys counters by name) a counter.
pub fn define_counter(name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: pointers to a live string and local.
    let status = unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

/// Adds to a counter. Failures are ignored: a lost count must never fail a request.
#[inline]
pub fn increment(id: u32, by: u64) {
    let by = i64::try_from(by).unwrap_or(i64::MAX);
    // SAFETY: plain values.
    unsafe {
        proxy_increment_metric(id, by);
    }
}

/// Writes a line to Envoy's log (component `wasm`).
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: pointer and length of a live string.
    unsafe {
        proxy_log(level as u32, message.as_ptr(), message.len());
    }
}

/// Envoy's level for the `wasm` log component (1 = debug); `None` if the host would not say.
pub fn log_level() -> Option<u32> {
    let mut level = 0;
    // SAFETY: pointer to a live local.
    (unsafe { proxy_get_log_level(&mut level) } == OK).then_some(level)
}

/// The host's wall clock, nanoseconds since the Unix epoch (0 if unavailable).
pub fn now_nanos() -> u64 {
    let mut t = 0;
    // SAFETY: pointer to a live local.
    unsafe {
        proxy_get_current_time_nanoseconds(&mut t);
    }
    t
}

/// Asks for `proxy_on_tick` on the current root context every `millis` milliseconds.
pub fn set_tick_period(millis: u32) -> bool {
    // SAFETY: plain value.
    unsafe { proxy_set_tick_period_milliseconds(millis) == OK }
}
