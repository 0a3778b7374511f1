# `make oci`: the release module as two OCI image layouts Istio can pull (docs/oci.md),
# target/oci/compat and target/oci/artifact; digests in target/oci/digests.txt.
# `make test-oci`: push both to a throwaway local registry and pull the module back.

OCI_OUT := target/oci

.PHONY: oci test-oci

# The builder is standard-library Python: no .venv needed. SOURCE_DATE_EPOCH (default 0)
# is the only timestamp in the images.
oci: wasm
	python3 oci/build.py --wasm $(WASM) --out $(OCI_OUT)

test-oci: oci py-deps
	@scripts/apt-install.sh docker-registry skopeo
	$(PY) -m pytest tests/oci -q -p no:cacheprovider

EXTRA_TESTS += test-oci
