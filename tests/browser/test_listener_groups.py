"""Scenario 3, listener groups: a.example.com and b.example.com are one listener (one filter
chain, and one listener in sni-guard's configuration), c.example.com another. In one browser,
the page on a first loads an image, a script and a credentialed CORS fetch from b, then (a
second page load) the same from c (`sites.PAGE`).

b's requests share a's connection legitimately: with sni-guard exactly as without it, each is
sent once, on a's connection, and answered 200 by the ab chain (no 421, so no extra round trip
and no extra connection). c's requests: 404 on a's connection without sni-guard; 421 and a retry
on a connection for c with it.

b is loaded first because Firefox stops coalescing onto a connection once it has had a 421 on
it: loaded after c, b's requests would open a connection of their own (see docs/browsers.md)."""

from sites import A, B, C, listener_groups, without_and_with
from subresources import closed_net_log, load_page

# The kinds every browser sends on the page's connection (Chromium keeps the anonymous fetch off
# it, see test_subresources.py).
KINDS = ("image", "script", "fetch")


site = without_and_with(listener_groups)


def test_same_listener_shares_the_connection_other_listener_gets_421(site, browser):
    guard, envoy = site
    same = load_page(envoy, browser, (B,))
    other = load_page(envoy, browser, (C,))
    net_log = closed_net_log(browser)

    for kind in KINDS:
        # Same listener: one request, on a's connection, served by the shared chain.
        assert same.results[f"b {kind}"] == ("loaded" if kind == "image" else "ab")
        assert [(x.chain, x.sni, x.status) for x in same.logged[(B, kind)]] == [("ab", A, 200)]
        if net_log:
            sent = same.sent(net_log, B, kind)
            assert [(s.host, x.status) for s, x in sent] == [(same.authority(A), 200)]

        # Other listener.
        seen = [(x.chain, x.sni, x.status) for x in other.logged[(C, kind)]]
        if not guard:
            assert other.results[f"c {kind}"] == "failed"
            assert seen == [("ab", A, 404)], seen
            continue
        *retried, last = seen
        assert all(status == 421 and chain == "ab" and sni in (A, B)
                   for chain, sni, status in retried), seen
        if last == ("c", C, 200):
            assert other.results[f"c {kind}"] == ("loaded" if kind == "image" else "c")
        else:
            # Firefox's retry coalesced again (see test_subresources.py).
            assert browser.name == "firefox" and len(seen) == 2 and last[2] == 421, seen
            assert other.results[f"c {kind}"] == "failed"
    if guard:
        assert any(x.status == 421 for k in KINDS for x in other.logged[(C, k)])
