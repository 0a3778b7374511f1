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

# Earlier builds of the filter, measured side by side with its default configuration, each built
# from its commit's own tree and lock file (needs the git history):
# - `handwritten`: before it moved onto the proxy-wasm SDK (the ABI spoken by hand in
#   src/abi.rs); the SDK build must not cost more.
# - `previous`: before the chain-bound form (issue 15); the SNI-based default must not cost more.
VARIANT_COMMIT_handwritten := dccd5a8
VARIANT_COMMIT_previous    := 6241cfb
VARIANTS_DIR     := target/bench-variants
HANDWRITTEN_WASM := $(VARIANTS_DIR)/handwritten/sni_guard.wasm
PREVIOUS_WASM    := $(VARIANTS_DIR)/previous/sni_guard.wasm

$(VARIANTS_DIR)/%/sni_guard.wasm:
	rm -rf $(VARIANTS_DIR)/$* && mkdir -p $(VARIANTS_DIR)/$*/src
	git archive $(VARIANT_COMMIT_$*) | tar -x -C $(VARIANTS_DIR)/$*/src
	cd $(VARIANTS_DIR)/$*/src && cargo build --release --locked --target $(WASM_TARGET) -p sni-guard \
	  --target-dir ../build
	cp $(VARIANTS_DIR)/$*/build/$(WASM_TARGET)/release/sni_guard.wasm $@

# `nolog`: this build without the log callback (feature `bench-no-log`), beside `noflags`: what
# keeping `proxy_on_log` exported costs a configuration that counts no flags.
NOLOG_WASM := $(VARIANTS_DIR)/nolog/sni_guard.wasm

bench: bench-deps certs $(HANDWRITTEN_WASM) $(PREVIOUS_WASM)
	cargo build --release --target $(WASM_TARGET) -p sni-guard --features bench-no-log
	@mkdir -p $(dir $(NOLOG_WASM))
	cp target/$(WASM_TARGET)/release/sni_guard.wasm $(NOLOG_WASM)
	cargo build --release --target $(WASM_TARGET) -p sni-guard -p empty-filter
	$(PY) bench/run.py --rounds $${BENCH_ROUNDS:-20} --variant handwritten=$(HANDWRITTEN_WASM) \
	  --variant previous=$(PREVIOUS_WASM) --variant nolog=$(NOLOG_WASM)

# Redraws bench/RESULTS.md and the chart from the last run's bench/results.json.
bench-report: $(VENV)/.bench-installed
	$(PY) bench/report.py

# Where sni-guard's cost comes from: partial builds (the `bench-stage-*` features, Cargo.toml) side
# by side with no filter, the empty SDK filter, the Lua recipe, the hand-written-ABI build and
# sni-guard itself, direct response only. Writes bench/stages/RESULTS.md (docs/bench.md, "Cost
# breakdown").
STAGES_DIR := target/bench-stages
STAGES     := contexts callbacks check

bench-stages: bench-deps certs $(HANDWRITTEN_WASM)
	@mkdir -p $(STAGES_DIR)
	for s in $(STAGES); do \
	  cargo build --release --target $(WASM_TARGET) -p sni-guard --features bench-stage-$$s && \
	  cp target/$(WASM_TARGET)/release/sni_guard.wasm $(STAGES_DIR)/$$s.wasm || exit 1; \
	done
	cargo build --release --target $(WASM_TARGET) -p sni-guard -p empty-filter
	$(PY) bench/run.py --backends direct --configs none,empty,lua,default \
	  --variant stage1-contexts=$(STAGES_DIR)/contexts.wasm \
	  --variant stage2-callbacks=$(STAGES_DIR)/callbacks.wasm \
	  --variant stage3-check=$(STAGES_DIR)/check.wasm \
	  --variant handwritten=$(HANDWRITTEN_WASM) \
	  --rounds $${BENCH_ROUNDS:-20} --seconds 2 --latency-rounds 1 --latency-seconds 1 \
	  --out bench/stages
