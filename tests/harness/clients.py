"""Real TLS clients: an HTTP/2 client (the `h2` protocol library over `ssl`) that sends several
requests with different authorities over ONE connection, as a coalescing browser does, and a raw
HTTP/1.1 client that sends exactly the bytes a test gives it."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from .envoy import CA


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reset: bool = False

    def add_headers(self, raw: list[tuple[bytes, bytes]]) -> None:
        """Takes a response header block: `:status` sets the status, the rest are kept."""
        for k, v in raw:
            k, v = k.decode(), v.decode(errors="replace")
            if k == ":status":
                self.status = int(v)
            else:
                self.headers.append((k, v))

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


def tls_context(alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(CA))
    ctx.set_alpn_protocols(alpn)
    return ctx


def tls_socket(port: int, sni: str | None, alpn: list[str], host: str = "127.0.0.1",
               timeout: float = 10.0, verify_name: bool = True) -> ssl.SSLSocket:
    """A TLS connection to `host:port` that sends `sni` as server name (none when `None`).
    The certificate is verified against the test CA, and against the name when there is one
    and `verify_name` is set (tests with names the demo certificate does not cover clear it)."""
    ctx = tls_context(alpn)
    if sni is None or not verify_name:
        ctx.check_hostname = False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.create_connection((host, port), timeout=timeout) if family == socket.AF_INET \
        else socket.create_connection((host, port, 0, 0), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=sni)


class H2Connection:
    """One HTTP/2 connection; `request` may be called many times and always reuses it."""

    def __init__(self, port: int, sni: str | None, host: str = "127.0.0.1",
                 verify_name: bool = True):
        self.sock = tls_socket(port, sni, ["h2"], host=host, verify_name=verify_name)
        if self.sock.selected_alpn_protocol() != "h2":
            raise RuntimeError(f"ALPN negotiated {self.sock.selected_alpn_protocol()!r}, not h2")
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.conn.initiate_connection()
        self._flush()
        self.requests_sent = 0

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, authority: str | bytes | None, path: str = "/", method: str = "GET",
                extra_headers: list[tuple[bytes, bytes]] | None = None,
                scheme: str = "https", body: bytes | None = None) -> Response:
        """Sends one request on this connection and reads its whole response. `authority=None`
        sends no `:authority` pseudo-header."""
        sid = self.conn.get_next_available_stream_id()
        headers: list[tuple[bytes, bytes]] = [(b":method", method.encode())]
        if method != "CONNECT" or scheme:
            headers.append((b":scheme", scheme.encode()))
        if authority is not None:
            a = authority.encode() if isinstance(authority, str) else authority
            headers.append((b":authority", a))
        if method != "CONNECT":
            headers.append((b":path", path.encode()))
        headers += extra_headers or []
        self.conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self._flush()
        self.requests_sent += 1
        resp = Response(status=0)
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the response ended")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    resp.add_headers(ev.headers)
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    resp.body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self._flush()
                    return resp
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    resp.reset = True
                    self._flush()
                    return resp
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise ConnectionError(f"GOAWAY: {ev.error_code}")
            self._flush()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except Exception:
            pass
        self.sock.close()

    def __enter__(self) -> "H2Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_h1_response(s: socket.socket) -> Response:
    """Reads one HTTP/1.1 response from `s` (body by content-length, else up to the first
    read's end)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        return Response(status=0, body=buf)
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    resp = Response(status=status, headers=headers)
    length = resp.header("content-length")
    if length is not None:
        while len(rest) < int(length):
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        resp.body = rest[: int(length)]
    else:
        resp.body = rest
    return resp


def h1_exchange(port: int, sni: str | None, raw_request: bytes, host: str = "127.0.0.1"
                ) -> Response:
    """Sends `raw_request` verbatim over a fresh TLS connection (ALPN http/1.1) and parses the
    first response. The request should carry `Connection: close` or a body-less method."""
    with tls_socket(port, sni, ["http/1.1"], host=host) as s:
        s.sendall(raw_request)
        return read_h1_response(s)


def h1_plaintext_get(port: int, host_header: str, path: str = "/") -> Response:
    """One HTTP/1.1 GET over plain TCP (no TLS, so no SNI): a port-80 listener's traffic."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
                  .encode())
        return read_h1_response(s)


def h1_get(port: int, sni: str | None, host_header: str, path: str = "/") -> Response:
    return h1_exchange(
        port, sni,
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
