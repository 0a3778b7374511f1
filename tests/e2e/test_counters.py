"""Counters on the admin /stats/prometheus page: checks, 421s, and Envoy's response flags."""

from harness.clients import H2Connection

A = "a.example.com"


def flag(envoy, code: str) -> float:
    return envoy.counter(f'sni_guard_response_flag{{flag="{code}"}}')


def test_every_core_flag_has_a_counter(guarded):
    stats = guarded.admin("/stats/prometheus")
    codes = ("LH UH UT LR UR UF UC UO NR DI FI RL UAEX RLSE DC URX SI IH DPE UMSDR RFCF NFCF DT "
             "UPE NC OM DF DO DR UDO").split()
    assert len(codes) == 30
    for code in codes:
        assert f'sni_guard_response_flag{{flag="{code}"}}' in stats, code


def test_no_route_upstream_failure_and_overflow_are_counted(guarded):
    port = guarded.listener_port()
    nr, uf, uo = flag(guarded, "NR"), flag(guarded, "UF"), flag(guarded, "UO")
    with H2Connection(port, sni=A) as conn:
        # Passes sni-guard (same host) but matches no route domain: NR.
        assert conn.request("a.example.com.", path="/nr").status == 404
        # A route to a closed port: UF.
        assert conn.request(A, path="/demo/uf").status == 503
        # A circuit breaker that admits nothing: UO.
        assert conn.request(A, path="/demo/uo").status == 503
    assert guarded.wait_counter('sni_guard_response_flag{flag="NR"}', nr + 1) == nr + 1
    assert guarded.wait_counter('sni_guard_response_flag{flag="UF"}', uf + 1) == uf + 1
    assert guarded.wait_counter('sni_guard_response_flag{flag="UO"}', uo + 1) == uo + 1


def test_successful_requests_touch_no_flag_counter(guarded):
    port = guarded.listener_port()
    checked = guarded.counter("sni_guard_requests_checked")
    flags_before = {k: v for k, v in guarded.prometheus().items()
                    if k.startswith("sni_guard_response_flag")}
    with H2Connection(port, sni=A) as conn:
        for _ in range(20):
            assert conn.request(A).status == 200
    assert guarded.wait_counter("sni_guard_requests_checked", checked + 20) == checked + 20
    flags_after = {k: v for k, v in guarded.prometheus().items()
                   if k.startswith("sni_guard_response_flag")}
    assert flags_after == flags_before
