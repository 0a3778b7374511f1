//! Names the proxy-wasm callbacks sni-guard implements, for the wasm32 linker wrapper
//! (`scripts/wasm-link`, set in `.cargo/config.toml`), which drops the SDK's export of every
//! other one: Envoy then enters the module per request only for context creation, request
//! headers, the access log and deletion. `tests/e2e/test_module_exports.py` checks the result.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        return;
    }
    let feature = |name: &str| std::env::var_os(format!("CARGO_FEATURE_{name}")).is_some();

    // Once per VM or configuration.
    let mut callbacks = vec![
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_tick",
        "proxy_on_context_create",
        "proxy_on_delete",
    ];
    // Per request. The benchmark's `bench-stage-contexts` build keeps only creation and deletion.
    if !feature("BENCH_STAGE_CONTEXTS") {
        callbacks.push("proxy_on_request_headers");
        // `bench-no-log`: what the empty log callback costs a configuration that counts no flags.
        if !feature("BENCH_NO_LOG") {
            callbacks.push("proxy_on_log");
        }
    }
    // Read by the linker, which rustc runs with the environment of this crate's compilation.
    println!(
        "cargo:rustc-env=PROXY_WASM_CALLBACKS={}",
        callbacks.join(" ")
    );
}
