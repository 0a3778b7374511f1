"""Envoy's side of a browser run: the demo access log lines of one request, parsed."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from harness.clients import h1_get
from harness.envoy import Envoy

A = "a.example.com"

# The demo's access log format (envoy/envoy.yaml) is `name=value` fields around the protocol and
# method; the fields are found by name, so fields added to the format do not disturb the tests.
_FIELD = re.compile(r"(\w+)=(\S*)")
_PROTOCOL = re.compile(r" sni=\S* (\S+) ")


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
    fields = dict(_FIELD.findall(line))
    protocol = _PROTOCOL.search(line)
    try:
        return Logged(fields["chain"], fields["sni"], protocol.group(1), fields["authority"],
                      fields["path"], int(fields["status"]), fields["flags"], fields["details"])
    except (KeyError, AttributeError, ValueError):
        return None


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




def settle(envoy: Envoy) -> list[Logged]:
    """Every request answered so far, logged: sends one more request (a marker, HTTP/1.1 to a)
    and waits for its line. Envoy appends access log entries to one buffer in the order the
    requests end, so once the marker is in the file, so is everything finished before it."""
    port = envoy.listener_port()
    marker = f"/settle-{next(_markers)}"
    h1_get(port, A, f"{A}:{port}", marker)  # whatever the answer: it is logged
    if not envoy.wait_access_log(f"path={marker} ", timeout=10.0):
        raise TimeoutError("Envoy did not log the marker request")
    return logged(envoy)


def of(lines: list[Logged], authority: str, path: str) -> list[Logged]:
    """The lines of one request (its tries), in order."""
    return [x for x in lines if x.authority == authority and x.path == path]


_markers = itertools.count()
