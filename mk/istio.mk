# Istio delivery (istio/, docs/istio.md): the manifests, and those sni-guard-audit writes,
# validated strictly against the CRD schemas of each Istio release they are for (1.26-1.30, in
# ../shared/istio-crds/<release>/, override ISTIO_CRDS), and each one programmed into real Envoy
# the way Istio of that release would program a gateway (tests/istio/istio_render.py names the
# Istio sources it follows).
ISTIO_CRDS ?= $(abspath $(CURDIR)/../shared/istio-crds)

.PHONY: test-istio istio-table
test-istio: wasm certs py-deps
	@test -d "$(ISTIO_CRDS)" || echo "NOTICE: no Istio CRD schemas at $(ISTIO_CRDS): manifest validation will be SKIPPED"
	cargo build -p sni-guard-audit
	ISTIO_CRDS="$(ISTIO_CRDS)" $(PY) -m pytest tests/istio -q -p no:cacheprovider -rs

# The manifest x release table of docs/istio.md (test-istio fails when the docs differ).
istio-table: py-deps
	@ISTIO_CRDS="$(ISTIO_CRDS)" $(PY) tests/istio/test_manifests.py

EXTRA_TESTS += test-istio
