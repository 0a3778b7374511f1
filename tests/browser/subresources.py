"""Scenarios 2 and 3 share one page: a page on a.example.com that loads an image, a script and
two CORS fetches from b.example.com and/or c.example.com (`sites.PAGE`). This runs it in a
browser and collects both sides: what the page reports and what Envoy logged; Chromium's
net-log adds the browser's own record once the browser has closed."""

from __future__ import annotations

from dataclasses import dataclass

from browsers import Browser
from harness.envoy import Envoy
from netlog import Exchange, NetLog, Session
from observe import Logged, of, settle
from sites import A, SUBRESOURCES


@dataclass
class PageRun:
    port: int
    results: dict[str, str]                  # "b image" -> "loaded" / chain name / "failed"
    logged: dict[tuple[str, str], list[Logged]]  # (host, kind) -> Envoy's lines, in order
    paths: dict[str, str]                    # kind -> the path this run requested

    def authority(self, host: str) -> str:
        return f"{host}:{self.port}"

    def sent(self, net_log: NetLog, host: str, kind: str) -> list[tuple[Session, Exchange]]:
        """Chromium's record of the requests for one subresource."""
        return net_log.exchanges(self.authority(host), self.paths[kind])


def load_page(envoy: Envoy, browser: Browser, hosts: tuple[str, ...]) -> PageRun:
    """Opens the page on a in `browser`, loading from `hosts`, and waits until every
    subresource has loaded or failed."""
    port = envoy.listener_port()
    run = f"?run={browser.name}&hosts={','.join(h[0] for h in hosts)}"
    page = browser.visit(f"https://{A}:{port}/page{run}")
    assert page.status == 200, page
    results = browser.wait_for("window.results")
    paths = {kind: path.format(run=run) for kind, path in SUBRESOURCES.items()}
    lines = settle(envoy)
    logged = {(h, kind): of(lines, f"{h}:{port}", path)
              for h in hosts for kind, path in paths.items()}
    return PageRun(port, results, logged, paths)


def closed_net_log(browser: Browser) -> NetLog | None:
    """Closes the browser; Chromium's net-log, complete now."""
    browser.close()
    return NetLog(browser.net_log) if browser.name == "chromium" else None
