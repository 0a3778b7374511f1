"""Scenario 4, dry run: sni-guard decides but does not answer. The browser sees exactly what it
sees without the filter (404 for b on a's connection), and `sni_guard_would_misdirect` counts
every request that would have been a 421."""

from navigation import a_then_b
from observe import host, logged, requests_for, settle
from sites import A, B, demo, without_and_with

WOULD = 'sni_guard_would_misdirect{reason="listener_mismatch",protocol="http2"}'
DID = 'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}'


site = without_and_with(lambda guard: demo(guard, '{"mode": "dry_run"}'),
                        ids=("without", "dry_run"), forms=True)


def test_dry_run_changes_nothing_the_browser_sees(site, browser):
    dry_run, envoy = site
    nav = a_then_b(browser, envoy.listener_port(), "dry-run")
    browser.close()

    assert nav.second.status == 404 and "hello from b" not in nav.second.text
    [lost] = requests_for(envoy, nav.b, nav.path)
    assert (lost.chain, lost.sni, lost.status, lost.flags) == ("gateway-a", A, 404, "NR")

    # Every request for b on a's connection (this browser's, earlier ones', favicons) is one
    # that enforce mode would have answered 421.
    mismatched = sum(1 for x in settle(envoy) if x.sni == A and host(x.authority) == B)
    assert mismatched >= 1
    if dry_run:
        assert envoy.wait_counter(WOULD, mismatched) == mismatched
        assert envoy.counter(DID) == 0
        assert not [x for x in logged(envoy) if x.status == 421]
    else:
        assert not [k for k in envoy.prometheus() if k.startswith("sni_guard_")]
