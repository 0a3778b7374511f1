"""The Envoy configurations the browsers visit, all derived from the shipped demo bootstrap
(`envoy/envoy.yaml`) or from the harness's gateway shape, which is built from its pieces."""

from __future__ import annotations

import json
from typing import Callable

import pytest

from harness.envoy import FORMS, Envoy
from harness.envoy import _walk, load_demo, remove_filter, set_plugin_config
from harness.gateway import gateway_config
from harness.h3 import quic_listener

A, B, C = "a.example.com", "b.example.com", "c.example.com"

# The page on a.example.com that loads an image, a script and two CORS fetches (with and without
# credentials) from b and from c,
# and records in `window.results` how each ended. Script and JSON name the filter chain that
# served them, so the browser itself reports where each request landed.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>a.example.com</title>
<h1>a page on a.example.com</h1>
<ul id="out"></ul>
<script>
const results = {};
function done(key, value) {
  results[key] = value;
  const li = document.createElement("li");
  li.textContent = key + ": " + value;
  document.getElementById("out").append(li);
  if (Object.keys(results).length === 4 * hosts.length) window.results = results;
}
// The page's query string goes with every request, so that each run's requests can be told apart
// in the access log; `hosts` names the hosts to load from (default: b and c).
const run = location.search;
const hosts = (new URLSearchParams(run).get("hosts") || "b,c").split(",");
for (const h of hosts) {
  const base = "https://" + h + ".example.com:" + location.port;
  const img = new Image();
  img.onload = () => done(h + " image", "loaded");
  img.onerror = () => done(h + " image", "failed");
  img.src = base + "/pixel.svg" + run;
  document.body.append(img);
  const s = document.createElement("script");
  s.onload = () => done(h + " script", s.dataset.chain || "no chain");
  s.onerror = () => done(h + " script", "failed");
  s.src = base + "/script.js" + run;
  document.head.append(s);
  // A credentialed fetch (as an API call with cookies), and one without credentials.
  for (const [kind, credentials] of [["fetch", "include"], ["anonymous fetch", "omit"]]) {
    fetch(base + "/data.json" + run + "&" + credentials, {credentials})
      .then(r => r.ok ? r.json() : Promise.reject(r.status))
      .then(j => done(h + " " + kind, j.chain), () => done(h + " " + kind, "failed"));
  }
}
</script>
"""
PIXEL = ('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
         '<rect width="8" height="8" fill="green"/></svg>')
# The paths the page requests from b and c, by kind; `{run}` is the page's query string.
SUBRESOURCES = {"image": "/pixel.svg{run}", "script": "/script.js{run}",
                "fetch": "/data.json{run}&include", "anonymous fetch": "/data.json{run}&omit"}


def _serve(path: str, content_type: str, body: str) -> dict:
    return {
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"inline_string": body}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": content_type},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            # The page on a.example.com may read these cross-origin (CORS), with credentials.
            {"header": {"key": "access-control-allow-origin", "value": "%REQ(origin)%"}},
            {"header": {"key": "access-control-allow-credentials", "value": "true"}},
        ],
    }


def site_routes(chain: str) -> list[dict]:
    """What every chain of the subresource site serves."""
    return [
        _serve("/page", "text/html; charset=utf-8", PAGE),
        _serve("/pixel.svg", "image/svg+xml", PIXEL),
        _serve("/script.js", "text/javascript",
               f"document.currentScript.dataset.chain = {json.dumps(chain)};\n"),
        _serve("/data.json", "application/json", json.dumps({"chain": chain})),
    ]


def demo(guard: bool, plugin_json: str | None = None) -> dict:
    """The shipped demo, as it is (optionally another plugin configuration), or without
    sni-guard."""
    config = load_demo()
    if not guard:
        return remove_filter(config)
    if plugin_json is not None:
        set_plugin_config(config, plugin_json)
    return config


def three_gateways(guard: bool) -> dict:
    """Three chains selected by SNI (a, b, c), one wildcard certificate, strict sni-guard."""
    return gateway_config([(f"gateway-{h[0]}", [h]) for h in (A, B, C)],
                          {} if guard else None, routes=site_routes)


def listener_groups(guard: bool) -> dict:
    """Two chains: `ab` serves a and b, `c` serves c; sni-guard knows the same grouping."""
    chains = [("ab", [A, B]), ("c", [C])]
    plugin = {"listeners": [{"name": n, "hostnames": h} for n, h in chains]}
    return gateway_config(chains, plugin if guard else None, routes=site_routes)


def http1_only(config: dict) -> dict:
    """Every TLS context offers only HTTP/1.1 in ALPN: browsers cannot coalesce."""
    for d in _walk(config):
        if "alpn_protocols" in d:
            d["alpn_protocols"] = ["http/1.1"]
    return config


def with_quic(config: dict) -> dict:
    """Adds an HTTP/3 (QUIC) listener serving the same chains as the TLS listener."""
    listeners = config["static_resources"]["listeners"]
    listeners.append(quic_listener(listeners[0]))
    return config


def without_and_with(make_config: Callable[[bool], dict], ids=("without", "with"),
                     forms: bool = False):
    """A module-scoped fixture: Envoy running `make_config(False)` (no sni-guard), then
    `make_config(True)`; each test gets `(guard, envoy)` and so runs once for each. With
    `forms`, the guarded configuration runs in both of sni-guard's forms (SNI-based and
    chain-bound, `harness.envoy.FORMS`), the same assertions for each."""
    without, with_ = ids
    params = [(False, None)] + ([(True, f) for f in FORMS] if forms else [(True, None)])
    names = [without] + ([f"{with_}-{f}" for f in FORMS] if forms else [with_])

    @pytest.fixture(scope="module", params=params, ids=names)
    def site(request):
        guard, form = request.param
        config = make_config(guard)
        if form is not None:
            config = FORMS[form](config)
        with Envoy(config) as envoy:
            yield guard, envoy
    return site
