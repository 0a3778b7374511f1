# `make bench`: sni-guard's cost per request in real Envoy, next to no filter, an empty
# proxy-wasm filter and the Lua recipe (see docs/bench.md). Not part of `make test`.
# BENCH_ROUNDS, BENCH_SECONDS, BENCH_CONFIGS, BENCH_BACKENDS shorten a run while iterating.

BENCH_WASM := target/$(WASM_TARGET)/release/empty_filter.wasm

.PHONY: bench bench-deps bench-report bench-stages

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

# Where sni-guard's cost comes from: partial builds (the `bench-stage-*` features, src/abi.rs) side
# by side with no filter, the empty SDK filter, the Lua recipe and sni-guard itself, direct
# response only. Writes bench/stages/RESULTS.md (docs/bench.md, "Cost breakdown").
STAGES_DIR := target/bench-stages
STAGES     := bare callbacks check

bench-stages: bench-deps certs
	@mkdir -p $(STAGES_DIR)
	for s in $(STAGES); do \
	  cargo build --release --target $(WASM_TARGET) -p sni-guard --features bench-stage-$$s && \
	  cp target/$(WASM_TARGET)/release/sni_guard.wasm $(STAGES_DIR)/$$s.wasm || exit 1; \
	done
	cargo build --release --target $(WASM_TARGET) -p sni-guard -p empty-filter
	$(PY) bench/run.py --backends direct --configs none,empty,lua,default \
	  --variant stage1-bare=$(STAGES_DIR)/bare.wasm \
	  --variant stage2-callbacks=$(STAGES_DIR)/callbacks.wasm \
	  --variant stage3-check=$(STAGES_DIR)/check.wasm \
	  --rounds $${BENCH_ROUNDS:-16} --seconds 2 --latency-rounds 1 --latency-seconds 1 \
	  --out bench/stages
