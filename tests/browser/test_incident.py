"""Scenario 1, the incident itself: a top-level navigation to a.example.com, then to
b.example.com. The browser reuses the connection it opened for a (the certificate covers both
names). Without sni-guard the chain selected for a has no route for b: 404. With sni-guard: 421
on that connection, the browser retries on a new connection for b and shows b's page."""

import pytest

from harness.envoy import Envoy
from netlog import NetLog
from observe import requests_for
from sites import A, B, demo


@pytest.fixture(scope="module", params=[False, True], ids=["without", "with"])
def site(request):
    with Envoy(demo(request.param)) as envoy:
        yield request.param, envoy


def test_navigation_from_a_to_b(site, browser):
    guard, envoy = site
    port = envoy.listener_port()
    path = f"/incident-{browser.name}"
    first = browser.visit(f"https://{A}:{port}{path}")
    second = browser.visit(f"https://{B}:{port}{path}")
    browser.close()

    assert first.status == 200 and first.text.strip() == "hello from a.example.com"
    b = f"{B}:{port}"
    if guard:
        assert second.status == 200 and second.text.strip() == "hello from b.example.com"
        misdirected, retried = requests_for(envoy, b, path, count=2)
        assert (misdirected.chain, misdirected.sni, misdirected.status, misdirected.details) == (
            "gateway-a", A, 421, "misdirected_request")
        assert (retried.chain, retried.sni, retried.status) == ("gateway-b", B, 200)
    else:
        assert second.status == 404 and "hello from b" not in second.text
        [lost] = requests_for(envoy, b, path)
        assert (lost.chain, lost.sni, lost.status, lost.flags) == ("gateway-a", A, 404, "NR")
    assert misdirected.protocol == "HTTP/2" if guard else lost.protocol == "HTTP/2"

    if browser.name == "chromium":
        # The browser's own record: the request for b went out on the session opened for a.
        log = NetLog(browser.net_log)
        sent = log.exchanges(b, path)
        first_try = sent[0]
        assert first_try[0].host == f"{A}:{port}" and first_try[0].protocol == "h2"
        if guard:
            assert [x.status for _, x in sent] == [421, 200]
            assert sent[1][0].host == b, "the retry must use a new session opened for b"
            assert log.count("HTTP_TRANSACTION_RESTART_MISDIRECTED_REQUEST") >= 1
        else:
            assert [x.status for _, x in sent] == [404]
            assert log.count("HTTP_TRANSACTION_RESTART_MISDIRECTED_REQUEST") == 0
