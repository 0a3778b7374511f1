"""Reads a WebAssembly module's export section (binary format, WebAssembly Core spec §5.5.10).

Enough of the format to list what a module offers its host: the filter's exports decide which
callbacks Envoy enters per request.
"""

from __future__ import annotations

from pathlib import Path

EXPORT_SECTION = 7
KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def exports(module: Path) -> dict[str, str]:
    """Export name -> kind (`func`, `memory`, ...)."""
    data = module.read_bytes()
    if data[:4] != b"\0asm":
        raise ValueError(f"{module}: not a WebAssembly module")
    pos, found = 8, {}
    while pos < len(data):
        section = data[pos]
        size, pos = _uleb(data, pos + 1)
        end = pos + size
        if section == EXPORT_SECTION:
            count, p = _uleb(data, pos)
            for _ in range(count):
                length, p = _uleb(data, p)
                name = data[p : p + length].decode()
                kind = data[p + length]
                _, p = _uleb(data, p + length + 1)
                found[name] = KINDS.get(kind, str(kind))
        pos = end
    return found
