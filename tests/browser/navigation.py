"""The seed's incident as a user lives it: open a.example.com, then go to b.example.com in the
same tab (scenarios 1, 4, 5 and 6)."""

from __future__ import annotations

from dataclasses import dataclass

from browsers import Browser, Visit
from sites import A, B


@dataclass
class AThenB:
    first: Visit
    second: Visit
    a: str      # a's authority, host:port
    b: str      # b's authority
    path: str   # the path both visits used, unique to the browser


def a_then_b(browser: Browser, port: int, label: str) -> AThenB:
    path = f"/{label}-{browser.name}"
    first = browser.visit(f"https://{A}:{port}{path}")
    second = browser.visit(f"https://{B}:{port}{path}")
    assert first.status == 200 and first.text.strip() == "hello from a.example.com", first
    return AThenB(first, second, f"{A}:{port}", f"{B}:{port}", path)
