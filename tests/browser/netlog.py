"""Reading Chromium's net-log (`--log-net-log`): which HTTP/2 and HTTP/3 sessions the browser
opened, for which host, and which requests it sent on each. This is the browser's own account of
connection coalescing, independent of what Envoy logs.

The file is one JSON object: `constants` maps event and source type names to numbers, `events`
lists every event with its source (a session, a request, a socket ...). Only the event names
and the parameters used below are relied on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Logged on a request when Chromium restarts it after a 421 (once, with IP-based pooling and
# alternative services off).
RESTART_MISDIRECTED = "HTTP_TRANSACTION_RESTART_MISDIRECTED_REQUEST"

# Per protocol: the source type of a session, the events of sent and received header blocks.
_PROTOCOLS = {
    "h2": ("HTTP2_SESSION", "HTTP2_SESSION_SEND_HEADERS", "HTTP2_SESSION_RECV_HEADERS"),
    "h3": ("QUIC_SESSION", "HTTP3_HEADERS_SENT", "HTTP3_HEADERS_DECODED"),
}


@dataclass
class Exchange:
    """One request sent on a session, and the status that came back on its stream."""
    session: int
    stream: int
    authority: str
    path: str
    order: int      # position in the log: exchanges compare in time by it
    status: int | None = None


@dataclass
class Session:
    id: int
    protocol: str   # "h2" or "h3"
    host: str       # "host:port" the session was opened for
    exchanges: list[Exchange] = field(default_factory=list)


def _headers(params: dict) -> dict[str, str]:
    """Header lines as Chromium logs them ("name: value") as a dict."""
    out = {}
    for line in params.get("headers", []):
        name, _, value = line.partition(": ")
        out[name] = value
    return out


class NetLog:
    def __init__(self, path: Path):
        raw = path.read_text()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            # A browser that was killed leaves the closing brackets out.
            data = json.loads(raw.rstrip().rstrip(",") + "]}")
        constants = data["constants"]
        event_names = {v: k for k, v in constants["logEventTypes"].items()}
        source_names = {v: k for k, v in constants["logSourceType"].items()}
        begin = constants["logEventPhase"]["PHASE_BEGIN"]
        self.events = [
            (event_names.get(e["type"], ""), source_names.get(e["source"]["type"], ""),
             e["source"]["id"], e["phase"] == begin, e.get("params", {}))
            for e in data["events"]
        ]
        self.sessions: dict[int, Session] = {}
        streams: dict[tuple[int, int], Exchange] = {}
        for order, (name, source, sid, is_begin, params) in enumerate(self.events):
            for protocol, (session_type, sent, received) in _PROTOCOLS.items():
                if source != session_type:
                    continue
                if name == session_type and is_begin:
                    host = params["host"]
                    if "port" in params:
                        host = f"{host}:{params['port']}"
                    self.sessions[sid] = Session(sid, protocol, host)
                elif name == sent and sid in self.sessions:
                    h = _headers(params)
                    x = Exchange(sid, params["stream_id"], h.get(":authority", ""),
                                 h.get(":path", ""), order)
                    streams[(sid, x.stream)] = x
                    self.sessions[sid].exchanges.append(x)
                elif name == received and (sid, params.get("stream_id")) in streams:
                    status = _headers(params).get(":status")
                    if status:
                        streams[(sid, params["stream_id"])].status = int(status)

    def exchanges(self, authority: str, path: str) -> list[tuple[Session, Exchange]]:
        """Every time the browser sent `authority` + `path`, with the session it used, in order."""
        found = [(s, x) for s in self.sessions.values() for x in s.exchanges
                 if x.authority == authority and x.path == path]
        return sorted(found, key=lambda sx: sx[1].order)

    def count(self, event: str) -> int:
        """How many events of this type were logged."""
        return sum(1 for name, *_ in self.events if name == event)
