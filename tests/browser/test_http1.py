"""Scenario 5, an HTTP/1.1-only listener (ALPN offers only `http/1.1`): browsers do not reuse an
HTTP/1.1 connection for another host, so b gets a connection of its own, lands on its own
chain, and sni-guard has nothing to answer: no 421, no false positive."""

from navigation import a_then_b
from netlog import NetLog
from observe import host, requests_for, settle
from sites import B, demo, http1_only, without_and_with


site = without_and_with(lambda guard: http1_only(demo(guard)), forms=True)


def test_http1_is_never_coalesced(site, browser):
    guard, envoy = site
    nav = a_then_b(browser, envoy.listener_port(), "http1")
    browser.close()

    assert nav.second.status == 200 and nav.second.text.strip() == "hello from b.example.com"
    [served] = requests_for(envoy, nav.b, nav.path)
    assert (served.chain, served.sni, served.protocol, served.status) == (
        "gateway-b", B, "HTTP/1.1", 200)
    everything = settle(envoy)
    assert all(x.sni == host(x.authority) and x.status != 421 for x in everything), everything
    if browser.name == "chromium":
        assert not NetLog(browser.net_log).sessions, "Chromium opened an HTTP/2 or HTTP/3 session"
