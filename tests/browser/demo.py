"""`make demo-browser`: the incident in headless Chromium, pictured. Opens a.example.com and then
b.example.com against the demo bootstrap, once without and once with sni-guard, and saves what
the user sees on b as before.png and after.png in the directory given (default docs/img).
Run from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from browsers import Chromium  # noqa: E402
from harness.envoy import Envoy  # noqa: E402
from navigation import a_then_b  # noqa: E402
from observe import requests_for  # noqa: E402
from sites import demo  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    for guard, name in ((False, "before"), (True, "after")):
        with Envoy(demo(guard)) as envoy, Chromium() as browser:
            nav = a_then_b(browser, envoy.listener_port(), "demo")
            browser.screenshot(out / f"{name}.png")
            print(f"{name} ({'with' if guard else 'without'} sni-guard, {browser.version}): "
                  f"b.example.com answered {nav.second.status}, page shows "
                  f"{nav.second.text.strip().splitlines()[0]!r}")
            for x in requests_for(envoy, nav.b, nav.path, count=2 if guard else 1):
                print(f"  envoy: chain={x.chain} sni={x.sni} {x.protocol} status={x.status} "
                      f"flags={x.flags} details={x.details}")
            print(f"  screenshot: {out / (name + '.png')}")


if __name__ == "__main__":
    main()
