# Real browsers (tests/browser, docs/browsers.md): headless Chromium and Firefox ESR from Debian
# against the demo, each scenario without and with sni-guard. Part of `make test`.
#   make test-browser   the suite
#   make demo-browser   scenario 1 in Chromium, before/after screenshots into docs/img/

BROWSER_PACKAGES := chromium firefox-esr libnss3-tools

.PHONY: test-browser demo-browser browser-deps

browser-deps:
	@scripts/apt-install.sh $(BROWSER_PACKAGES)

test-browser: browser-deps wasm certs py-deps
	$(PY) -m pytest tests/browser -q -p no:cacheprovider

demo-browser: browser-deps wasm certs py-deps
	$(PY) tests/browser/demo.py docs/img

EXTRA_TESTS += test-browser
