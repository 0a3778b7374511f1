//! The few proxy-wasm host calls sni-guard makes on the request path, declared directly.
//!
//! The SDK's wrappers panic on any status they do not expect and allocate to serialise property
//! paths; these return `Option`/`bool` instead, and the paths are static. Statuses are read as
//! plain `u32` (an out-of-range value in a Rust enum would be undefined behaviour).

use std::ptr::null_mut;

const OK: u32 = 0;
/// proxy-wasm map type of the request headers.
const REQUEST_HEADERS: u32 = 0;
/// proxy-wasm metric type of a counter.
const COUNTER: u32 = 0;

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
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`
/// (a boxed byte slice of exactly `size` bytes).
fn take(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != OK || data.is_null() {
        return None;
    }
    // SAFETY: on success the host wrote `size` bytes into a buffer it obtained from
    // `proxy_on_memory_allocate(size)`, which allocates a `Box<[u8]>` of that length.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Reads a property by its serialised path (segments separated by NUL bytes).
pub fn get_property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers to live locals and a static path; see `take` for the returned buffer.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    take(status, data, size)
}

/// Reads one request header as bytes (never assumed to be UTF-8).
pub fn get_request_header(name: &[u8]) -> Option<Vec<u8>> {
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
    take(status, data, size)
}

/// Sends a local reply with response-code details (which the SDK's `send_http_response` cannot
/// set). `headers` is in the proxy-wasm map format. Returns whether Envoy accepted it.
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

/// Adds one to a counter. Failures are ignored: a lost count must never fail a request.
#[inline]
pub fn increment(id: u32) {
    // SAFETY: plain values.
    unsafe {
        proxy_increment_metric(id, 1);
    }
}
