# Istio delivery: manifests validated against the Istio 1.30 CRD schemas (../shared/istio-crds),
# and each one programmed into real Envoy the way Istio would (tests/istio).
.PHONY: test-istio
test-istio: wasm certs py-deps
	$(PY) -m pytest tests/istio -q -p no:cacheprovider -rs

EXTRA_TESTS += test-istio
