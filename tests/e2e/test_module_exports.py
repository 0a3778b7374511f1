"""The release module exports only the proxy-wasm callbacks sni-guard implements.

Envoy enters the VM for every exported callback on every request; the proxy-wasm SDK exports all
of them, and the linker wrapper (`scripts/wasm-link`, list in `build.rs`) keeps only these. A
plain `cargo build --release --target wasm32-unknown-unknown` must give the trimmed module.
"""

import importlib.util
import os
import stat
import subprocess

from harness.envoy import REPO, WASM


def exports(module) -> set[str]:
    """The module's export names, read by the OCI image builder's own parser (oci/build.py)."""
    spec = importlib.util.spec_from_file_location("oci_build", REPO / "oci" / "build.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return set(builder.wasm_exports(module.read_bytes()))

# The callbacks sni-guard implements: once per VM or configuration, then per request.
ALLOWED_CALLBACKS = {
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_log",
    "proxy_on_delete",
}
# The rest of the module's interface: the SDK's allocator and initialiser, the ABI marker.
OTHER_EXPORTS = {"memory", "malloc", "_initialize", "proxy_abi_version_0_2_1",
                 "__data_end", "__heap_base"}


def test_only_the_implemented_callbacks_are_exported():
    names = set(exports(WASM))
    callbacks = {n for n in names if n.startswith("proxy_on_")}
    assert callbacks == ALLOWED_CALLBACKS, (
        f"unexpected: {sorted(callbacks - ALLOWED_CALLBACKS)}, "
        f"missing: {sorted(ALLOWED_CALLBACKS - callbacks)}")
    assert names - callbacks <= OTHER_EXPORTS, sorted(names - callbacks - OTHER_EXPORTS)


def _run_wrapper(tmp_path, args, keep):
    """Runs scripts/wasm-link with a stand-in rust-lld that records its arguments."""
    fake = tmp_path / "rust-lld"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    env.pop("PROXY_WASM_CALLBACKS", None)
    if keep is not None:
        env["PROXY_WASM_CALLBACKS"] = keep
    out = subprocess.run([REPO / "scripts" / "wasm-link", *args], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


LINK_ARGS = ["-flavor", "wasm", "--export", "_initialize", "--export", "proxy_on_log",
             "--export", "proxy_on_done", "--export=proxy_on_tick",
             "--export=proxy_on_response_body", "--export=__heap_base", "in.o", "-o", "out.wasm"]


def test_linker_wrapper_drops_only_unlisted_callbacks(tmp_path):
    got = _run_wrapper(tmp_path, LINK_ARGS, "proxy_on_log proxy_on_tick")
    assert got == ["-flavor", "wasm", "--export", "_initialize", "--export", "proxy_on_log",
                   "--export=proxy_on_tick", "--export=__heap_base", "in.o", "-o", "out.wasm"]


def test_linker_wrapper_without_a_list_links_unchanged(tmp_path):
    assert _run_wrapper(tmp_path, LINK_ARGS, None) == LINK_ARGS
