"""gRPC: Envoy maps the local 421 reply onto gRPC's status model; this pins what clients see."""

from harness.clients import H2Connection

A = "a.example.com"


def test_misdirected_grpc_request_gets_a_grpc_error(guarded):
    port = guarded.listener_port()
    with H2Connection(port, sni=A) as conn:
        resp = conn.request(
            "b.example.com", path="/pkg.Service/Method", method="POST",
            extra_headers=[(b"content-type", b"application/grpc"), (b"te", b"trailers")],
            body=b"\x00\x00\x00\x00\x00")
    # Envoy answers gRPC requests' local replies as HTTP 200 with a grpc-status; for HTTP 421 its
    # HTTP-to-gRPC mapping gives 2 (UNKNOWN), and the reply body becomes grpc-message.
    assert resp.status == 200
    assert resp.header("content-type") == "application/grpc"
    assert resp.header("grpc-status") == "2"
    assert resp.header("grpc-message", ).startswith("Misdirected Request")
