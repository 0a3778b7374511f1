# Istio delivery (istio/, docs/istio.md): the manifests validated strictly against Istio 1.30's
# CRD schemas, which live beside the repository in ../shared/istio-crds (override ISTIO_CRDS),
# and each one programmed into real Envoy the way Istio would program a gateway (tests/istio).
ISTIO_CRDS ?= $(abspath $(CURDIR)/../shared/istio-crds)

.PHONY: test-istio
test-istio: wasm certs py-deps
	@test -d "$(ISTIO_CRDS)" || echo "NOTICE: no Istio CRD schemas at $(ISTIO_CRDS): manifest validation will be SKIPPED"
	ISTIO_CRDS="$(ISTIO_CRDS)" $(PY) -m pytest tests/istio -q -p no:cacheprovider -rs

EXTRA_TESTS += test-istio
