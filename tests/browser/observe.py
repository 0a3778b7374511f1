"""Envoy's side of a browser run: the demo access log lines of one request, parsed."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from harness.envoy import Envoy

# The demo's access log format (envoy/envoy.yaml), the fields the browser tests compare.
_LINE = re.compile(r"chain=(\S*) sni=(\S*) (\S+) \S+ authority=(\S*) path=(\S*) status=(\d+) "
                   r"flags=(\S*) details=(\S*)")


@dataclass(frozen=True)
class Logged:
    chain: str
    sni: str
    protocol: str
    authority: str
    path: str
    status: int
    flags: str
    details: str


def parse(line: str) -> Logged | None:
    m = _LINE.search(line)
    if not m:
        return None
    chain, sni, protocol, authority, path, status, flags, details = m.groups()
    return Logged(chain, sni, protocol, authority, path, int(status), flags, details)


def logged(envoy: Envoy) -> list[Logged]:
    return [x for x in map(parse, envoy.access_log()) if x]


def requests_for(envoy: Envoy, authority: str, path: str, count: int = 1,
                 timeout: float = 10.0) -> list[Logged]:
    """The logged requests for `authority` + `path`, in order, once at least `count` are there
    (Envoy writes its access log asynchronously) or `timeout` has passed."""
    lines = envoy.wait_access_log(f"authority={authority} path={path} ", count=count,
                                  timeout=timeout)
    return [x for x in map(parse, lines) if x]


def host(authority: str) -> str:
    """The host of a `host:port` authority (the test names are never IPv6 literals)."""
    return authority.split(":")[0]


def answered(envoy: Envoy, authority: str, path: str, timeout: float = 10.0) -> list[Logged]:
    """All logged requests for `authority` + `path`, once one of them got an answer other than
    421 (a browser's retry comes after the 421 it follows)."""
    deadline = time.monotonic() + timeout
    while True:
        found = requests_for(envoy, authority, path, count=0, timeout=0)
        if any(x.status != 421 for x in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
