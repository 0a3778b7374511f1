# `make bench`: sni-guard's cost per request in real Envoy, next to no filter, an empty
# proxy-wasm filter and the Lua recipe (see docs/bench.md). Not part of `make test`.
# BENCH_ROUNDS, BENCH_SECONDS, BENCH_CONFIGS, BENCH_BACKENDS shorten a run while iterating.

BENCH_WASM := target/$(WASM_TARGET)/release/empty_filter.wasm

.PHONY: bench bench-deps bench-report

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench-deps: deps $(VENV)/.bench-installed
	@scripts/apt-install.sh nghttp2-client nginx-light

bench: bench-deps certs
	cargo build --release --target $(WASM_TARGET) -p sni-guard -p empty-filter
	$(PY) bench/run.py

# Redraws bench/RESULTS.md and the chart from the last run's bench/results.json.
bench-report: $(VENV)/.bench-installed
	$(PY) bench/report.py
