"""A minimal proxy-wasm module, written out byte by byte, whose `on_request_headers` executes
`unreachable`: a stand-in for a filter VM that crashes at run time, to observe what Envoy's
`failure_policy` does then. sni-guard itself has no trap path (no panics, `panic = "abort"`
never reached), so Envoy's runtime-failure handling cannot be exercised with it honestly."""

from __future__ import annotations


def _vec(items: list[bytes]) -> bytes:
    assert len(items) < 128
    return bytes([len(items)]) + b"".join(items)


def _uleb(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + _uleb(len(body)) + body


def _name(s: str) -> bytes:
    return bytes([len(s)]) + s.encode()


I32 = 0x7F


def _functype(params: list[int], results: list[int]) -> bytes:
    return b"\x60" + _vec([bytes([p]) for p in params]) + _vec([bytes([r]) for r in results])


def _body(code: bytes) -> bytes:
    body = b"\x00" + code + b"\x0b"  # no locals, code, end
    return bytes([len(body)]) + body


def trap_module() -> bytes:
    types = [
        _functype([], []),                # 0: proxy_abi_version_0_2_1
        _functype([I32, I32], []),        # 1: on_context_create(context, parent)
        _functype([I32, I32], [I32]),     # 2: on_vm_start / on_configure(root, size)
        _functype([I32, I32, I32], [I32]),  # 3: on_request_headers(context, headers, eos)
        _functype([I32], [I32]),          # 4: on_memory_allocate(size)
    ]
    funcs = [0, 1, 2, 2, 3, 4]
    bodies = [
        _body(b""),
        _body(b""),
        _body(b"\x41\x01"),             # i32.const 1
        _body(b"\x41\x01"),
        _body(b"\x00"),                 # unreachable
        _body(b"\x41\x80\x08"),         # i32.const 1024: one scratch buffer is enough here
    ]
    exports = [
        ("proxy_abi_version_0_2_1", 0, 0), ("proxy_on_context_create", 0, 1),
        ("proxy_on_vm_start", 0, 2), ("proxy_on_configure", 0, 3),
        ("proxy_on_request_headers", 0, 4), ("proxy_on_memory_allocate", 0, 5),
        ("memory", 2, 0),
    ]
    return (b"\x00asm\x01\x00\x00\x00"
            + _section(1, _vec(types))
            + _section(3, _vec([bytes([f]) for f in funcs]))
            + _section(5, _vec([b"\x00\x02"]))  # one memory, at least 2 pages
            + _section(7, _vec([_name(n) + bytes([k, i]) for n, k, i in exports]))
            + _section(10, _vec(bodies)))
