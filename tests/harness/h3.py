"""HTTP/3: an Envoy QUIC listener derived from the demo's TLS listener, and a real HTTP/3 client
(aioquic) that sends several requests over ONE QUIC connection."""

from __future__ import annotations

import asyncio
import copy
import ssl

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent

from .clients import Response
from .envoy import CA, _walk

QUIC_TRANSPORT = "type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport"


def quic_listener(tcp_listener: dict) -> dict:
    """The same filter chains as `tcp_listener`, served over QUIC (HTTP/3) on a UDP port."""
    listener = copy.deepcopy(tcp_listener)
    listener["name"] = listener["name"] + "-quic"
    listener["address"]["socket_address"]["protocol"] = "UDP"
    listener["udp_listener_config"] = {"quic_options": {}}
    # QUIC has no TLS inspector: the QUIC stack reads the SNI itself.
    listener.pop("listener_filters", None)
    chains = list(listener.get("filter_chains", []))
    if "default_filter_chain" in listener:
        chains.append(listener["default_filter_chain"])
    for chain in chains:
        tls = chain["transport_socket"]["typed_config"]
        tls = copy.deepcopy(tls)
        tls["common_tls_context"]["alpn_protocols"] = ["h3"]
        tls.pop("@type", None)
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.quic",
            "typed_config": {"@type": QUIC_TRANSPORT, "downstream_tls_context": tls},
        }
        for d in _walk(chain):
            if d.get("stat_prefix") and "route_config" in d:
                d["codec_type"] = "HTTP3"
                d["http3_protocol_options"] = {}
    return listener


class _Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiters: dict[int, asyncio.Future] = {}
        self.responses: dict[int, Response] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for ev in self.h3.handle_event(event):
            resp = self.responses.get(getattr(ev, "stream_id", -1))
            if resp is None:
                continue
            if isinstance(ev, HeadersReceived):
                resp.add_headers(ev.headers)
            elif isinstance(ev, DataReceived):
                resp.body += ev.data
            if getattr(ev, "stream_ended", False):
                waiter = self.waiters.pop(ev.stream_id)
                if not waiter.done():
                    waiter.set_result(resp)

    async def request(self, authority: str, path: str) -> Response:
        sid = self._quic.get_next_available_stream_id()
        self.responses[sid] = Response(status=0)
        self.waiters[sid] = asyncio.get_running_loop().create_future()
        self.h3.send_headers(sid, [
            (b":method", b"GET"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
        ], end_stream=True)
        self.transmit()
        return await asyncio.wait_for(self.waiters[sid], timeout=10)


def h3_requests(port: int, sni: str, authorities: list[str], path: str = "/") -> list[Response]:
    """Opens one QUIC connection to 127.0.0.1:`port` with `sni` and sends one GET per authority,
    in order, on it."""
    async def run() -> list[Response]:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=sni)
        config.load_verify_locations(str(CA))
        config.verify_mode = ssl.CERT_REQUIRED
        async with connect("127.0.0.1", port, configuration=config,
                           create_protocol=_Client) as client:
            return [await client.request(a, path) for a in authorities]
    return asyncio.run(run())
