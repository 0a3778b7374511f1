# Observability pack (istio/observability/, docs/observability.md): Prometheus alerting rules
# (plain file and PrometheusRule), their promtool unit tests, the Grafana dashboard, and a real
# scrape test (Prometheus scraping Envoy running sni-guard). Part of `make test`.

OBS_DIR := istio/observability

.PHONY: test-observability observability-deps observability-rules

observability-deps:
	@scripts/apt-install.sh prometheus

# Regenerates the PrometheusRule from the plain rule file (the test suite fails when they differ).
observability-rules:
	python3 $(OBS_DIR)/gen_prometheusrule.py

test-observability: observability-deps wasm certs py-deps
	promtool check rules $(OBS_DIR)/sni-guard.rules.yaml
	promtool test rules $(OBS_DIR)/tests/*.yaml
	$(PY) -m pytest tests/observability -q -p no:cacheprovider

EXTRA_TESTS += test-observability
