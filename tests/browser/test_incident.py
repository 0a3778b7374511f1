"""Scenario 1, the incident itself: a top-level navigation to a.example.com, then to
b.example.com. The browser reuses the connection it opened for a (the certificate covers both
names). Without sni-guard the chain selected for a has no route for b: 404. With sni-guard: 421
on that connection, the browser retries on a new connection for b and shows b's page."""

from navigation import a_then_b
from netlog import RESTART_MISDIRECTED, NetLog
from observe import requests_for
from sites import A, B, demo, without_and_with

site = without_and_with(demo, forms=True)


def test_navigation_from_a_to_b(site, browser):
    guard, envoy = site
    nav = a_then_b(browser, envoy.listener_port(), "incident")
    browser.close()

    if guard:
        assert nav.second.status == 200 and nav.second.text.strip() == "hello from b.example.com"
        misdirected, retried = requests_for(envoy, nav.b, nav.path, count=2)
        assert (misdirected.chain, misdirected.sni, misdirected.protocol, misdirected.status,
                misdirected.details) == ("gateway-a", A, "HTTP/2", 421, "misdirected_request")
        assert (retried.chain, retried.sni, retried.status) == ("gateway-b", B, 200)
    else:
        assert nav.second.status == 404 and "hello from b" not in nav.second.text
        [lost] = requests_for(envoy, nav.b, nav.path)
        assert (lost.chain, lost.sni, lost.protocol, lost.status, lost.flags) == (
            "gateway-a", A, "HTTP/2", 404, "NR")

    if browser.name == "chromium":
        # The browser's own record: the request for b went out on the session opened for a.
        log = NetLog(browser.net_log)
        sent = log.exchanges(nav.b, nav.path)
        assert (sent[0][0].host, sent[0][0].protocol) == (nav.a, "h2")
        if guard:
            assert [x.status for _, x in sent] == [421, 200]
            assert sent[1][0].host == nav.b, "the retry must use a new session opened for b"
            assert log.count(RESTART_MISDIRECTED) >= 1
        else:
            assert [x.status for _, x in sent] == [404]
            assert log.count(RESTART_MISDIRECTED) == 0
