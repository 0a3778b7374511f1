"""The OCI images built by oci/build.py (`make oci`).

Builds both layouts from a copy of the release module into temporary directories, checks
their structure and reproducibility, pushes them with skopeo to a throwaway local registry
(Debian's docker-registry on 127.0.0.1), pulls them back through the registry HTTP API
and gets the module out of each the way Istio's image fetcher does.

Needs: target/wasm32-unknown-unknown/release/sni_guard.wasm (`make wasm`), and the
docker-registry and skopeo binaries (`make test-oci` installs them).
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request

import pytest

from harness.envoy import free_port
from harness.process import stop_process, wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(ROOT, "oci", "build.py")
WASM = os.environ.get("SNI_GUARD_WASM", os.path.join(ROOT, "target/wasm32-unknown-unknown/release/sni_guard.wasm"))

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
# What a go-containerregistry client (Istio's fetcher) offers when it asks for a manifest.
ACCEPT = ", ".join(
    [
        MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run_builder(out, **env):
    full_env = dict(os.environ)
    full_env.pop("SOURCE_DATE_EPOCH", None)
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, BUILDER, "--wasm", str(out.parent / "module.wasm"), "--out", str(out)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def read_digests(out):
    """digests.txt -> {"module": "sha256:...", "compat": ..., "artifact": ...}."""
    entries = {}
    with open(out / "digests.txt", encoding="utf-8") as f:
        for line in f:
            key, digest = line.split()[:2]
            entries[key] = digest
    return entries


class Layout:
    """Reads an OCI image layout directory, checking every blob against its name."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "oci-layout"), encoding="utf-8") as f:
            assert json.load(f) == {"imageLayoutVersion": "1.0.0"}
        with open(os.path.join(path, "index.json"), encoding="utf-8") as f:
            self.index = json.load(f)
        assert self.index["schemaVersion"] == 2
        assert len(self.index["manifests"]) == 1, "one image per layout"
        self.manifest_desc = self.index["manifests"][0]
        assert self.manifest_desc["mediaType"] == MANIFEST
        self.manifest_bytes = self.blob(self.manifest_desc)
        self.manifest = json.loads(self.manifest_bytes)

    def blob(self, desc):
        algo, hexdigest = desc["digest"].split(":", 1)
        assert algo == "sha256"
        with open(os.path.join(self.path, "blobs", algo, hexdigest), "rb") as f:
            data = f.read()
        assert sha256(data) == desc["digest"], f"blob {hexdigest} does not hash to its name"
        assert len(data) == desc["size"], f"blob {hexdigest}: size in descriptor is wrong"
        return data

    def blob_files(self):
        return sorted(os.listdir(os.path.join(self.path, "blobs", "sha256")))


# --- Istio's extraction rules (pkg/wasm/imagefetcher.go), restated over plain data ----------
# fetch(desc) returns a blob's bytes. Istio tries the compat rules first, then the oci
# ("artifact") rules; the first that succeeds gives the module.


class NotThisVariant(Exception):
    pass


def extract_compat(manifest, fetch):
    layers = manifest["layers"]
    if not layers:
        raise NotThisVariant("no layers")
    last = layers[-1]
    if last["mediaType"] != TAR_GZIP_LAYER:
        raise NotThisVariant(f"last layer is {last['mediaType']}, not tar+gzip")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(fetch(last))), mode="r:") as tar:
        for member in tar:
            if os.path.basename(member.name) == "plugin.wasm":
                return tar.extractfile(member).read()
    raise NotThisVariant("plugin.wasm not in the layer")


def extract_artifact(manifest, fetch):
    layers = manifest["layers"]
    if len(layers) != 2:
        raise NotThisVariant(f"number of layers must be 2 but got {len(layers)}")
    for layer in layers:
        if layer["mediaType"] == WASM_LAYER:
            return fetch(layer)
    raise NotThisVariant(f"no {WASM_LAYER} layer")


def extract_like_istio(manifest, fetch):
    """(variant, module). Istio's own first branch (Docker schema 2 manifests) never applies
    here: both images are OCI manifests."""
    assert manifest.get("mediaType") == MANIFEST
    try:
        return "compat", extract_compat(manifest, fetch)
    except NotThisVariant:
        pass
    return "oci", extract_artifact(manifest, fetch)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_bytes():
    if not os.path.isfile(WASM):
        pytest.fail(f"{WASM} is missing: run `make wasm` (or `make test-oci`, which builds it)")
    with open(WASM, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, module_bytes):
    # Build from a private copy: other people rebuilding target/ must not change the input
    # between two builds of this test.
    d = tmp_path_factory.mktemp("oci")
    (d / "module.wasm").write_bytes(module_bytes)
    return d


@pytest.fixture(scope="module")
def built(workdir):
    out = workdir / "out"
    stdout = run_builder(out)
    return out, stdout


@pytest.fixture(scope="module")
def compat(built):
    return Layout(str(built[0] / "compat"))


@pytest.fixture(scope="module")
def artifact(built):
    return Layout(str(built[0] / "artifact"))


# --- the layouts on disk ----------------------------------------------------------------


def test_compat_layout(compat, module_bytes):
    m = compat.manifest
    assert m["schemaVersion"] == 2 and m["mediaType"] == MANIFEST
    assert m["annotations"]["module.wasm.image/variant"] == "compat"
    assert len(m["layers"]) == 1
    layer = m["layers"][0]
    assert layer["mediaType"] == TAR_GZIP_LAYER

    assert m["config"]["mediaType"] == IMAGE_CONFIG
    config = json.loads(compat.blob(m["config"]))
    assert config["architecture"] == "wasm" and config["os"]
    gz = compat.blob(layer)
    tar_bytes = gzip.decompress(gz)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(tar_bytes)]}

    # gzip header: no mtime, no file name (FLG bit 3 clear).
    assert gz[:3] == b"\x1f\x8b\x08" and gz[4:8] == b"\0\0\0\0" and not gz[3] & 0x08
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()
        assert [x.name for x in members] == ["plugin.wasm"]
        (entry,) = members
        assert entry.isreg() and entry.mode == 0o644
        assert (entry.uid, entry.gid, entry.uname, entry.gname) == (0, 0, "", "")
        assert entry.mtime == 0  # SOURCE_DATE_EPOCH unset
        assert not entry.pax_headers
        assert tar.extractfile(entry).read() == module_bytes

    # Nothing else lies in the layout.
    wanted = {d["digest"].split(":")[1] for d in (compat.manifest_desc, m["config"], layer)}
    assert set(compat.blob_files()) == wanted


def test_artifact_layout(artifact, module_bytes):
    m = artifact.manifest
    assert m["schemaVersion"] == 2 and m["mediaType"] == MANIFEST
    assert m["config"]["mediaType"] == WASM_CONFIG
    runtime = json.loads(artifact.blob(m["config"]))
    assert runtime["type"] == "envoy_proxy"
    assert runtime["abiVersions"] and all(v.startswith("proxy_abi_version_") for v in runtime["abiVersions"])
    # Each ABI version claimed is a name in the module (a length-prefixed export name).
    for v in runtime["abiVersions"]:
        assert bytes([len(v)]) + v.encode() in module_bytes

    # Istio wants exactly two layers, one of them the raw module.
    assert sorted(x["mediaType"] for x in m["layers"]) == [WASM_CONFIG, WASM_LAYER]
    (wasm_layer,) = [x for x in m["layers"] if x["mediaType"] == WASM_LAYER]
    (config_layer,) = [x for x in m["layers"] if x["mediaType"] == WASM_CONFIG]
    assert artifact.blob(wasm_layer) == module_bytes
    assert artifact.blob(config_layer) == artifact.blob(m["config"])
    assert "module.wasm.image/variant" not in m.get("annotations", {})


def test_istio_reads_each_layout_as_its_own_variant(compat, artifact, module_bytes):
    assert extract_like_istio(compat.manifest, compat.blob) == ("compat", module_bytes)
    # The artifact must fail the compat rules (tried first) and pass the oci ones.
    with pytest.raises(NotThisVariant):
        extract_compat(artifact.manifest, artifact.blob)
    assert extract_like_istio(artifact.manifest, artifact.blob) == ("oci", module_bytes)
    with pytest.raises(NotThisVariant):
        extract_artifact(compat.manifest, compat.blob)


def test_digests_file(built, compat, artifact, module_bytes):
    out, stdout = built
    d = read_digests(out)
    assert d == {
        "module": sha256(module_bytes),
        "compat": compat.manifest_desc["digest"],
        "artifact": artifact.manifest_desc["digest"],
    }
    assert stdout == (out / "digests.txt").read_text()


def tree(path):
    """{relative path: bytes} for every file under path."""
    files = {}
    for dirpath, _, names in os.walk(path):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, path)] = f.read()
    return files


def test_reproducible(workdir, built):
    first = built[0]
    time.sleep(1.1)  # a clock read anywhere would now give another second
    second = workdir / "again"
    run_builder(second, TZ="Pacific/Kiritimati")
    for variant in ("compat", "artifact"):
        assert tree(first / variant) == tree(second / variant), variant
    assert read_digests(first) == read_digests(second)

    # Rebuilding into a directory that already holds a layout leaves no stale blobs.
    run_builder(second)
    assert tree(first / "compat") == tree(second / "compat")


def test_source_date_epoch_is_the_only_time(workdir, built):
    out = workdir / "epoch"
    run_builder(out, SOURCE_DATE_EPOCH="1700000000")
    other = read_digests(out)
    base = read_digests(built[0])
    assert other["module"] == base["module"]
    assert other["compat"] != base["compat"] and other["artifact"] != base["artifact"]
    layout = Layout(str(out / "compat"))
    config = json.loads(layout.blob(layout.manifest["config"]))
    assert config["created"] == "2023-11-14T22:13:20Z"
    tar_bytes = gzip.decompress(layout.blob(layout.manifest["layers"][0]))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        assert tar.getmembers()[0].mtime == 1700000000


def test_refuses_a_file_that_is_not_proxy_wasm(tmp_path):
    # A valid Wasm module with no exports at all: not a proxy-wasm filter.
    (tmp_path / "module.wasm").write_bytes(b"\0asm\x01\0\0\0")
    proc = subprocess.run(
        [sys.executable, BUILDER, "--wasm", str(tmp_path / "module.wasm"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "proxy_abi_version" in proc.stderr


# --- through a registry -----------------------------------------------------------------


def http_get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed: scripts/apt-install.sh docker-registry skopeo")
    d = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = d / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {d / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(d / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def exited(code):
            return RuntimeError(f"docker-registry exited with {code}: {(d / 'registry.log').read_text()}")

        if not wait_ready(proc, base + "/v2/", 30, exited):
            pytest.fail("docker-registry did not answer /v2/ within 30 s")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


def skopeo(*args):
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail("skopeo is not installed: scripts/apt-install.sh docker-registry skopeo")
    proc = subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def pushed(registry, built):
    out = built[0]
    for variant in ("compat", "artifact"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{out / variant}", f"docker://{registry}/sni-guard:{variant}")
    return registry


def pull(registry, tag):
    """Pull an image over the registry API, verifying every digest: (manifest, fetch)."""
    base = f"http://{registry}/v2/sni-guard"
    status, headers, body = http_get(f"{base}/manifests/{tag}", ACCEPT)
    assert status == 200
    assert headers["Content-Type"] == MANIFEST
    assert headers["Docker-Content-Digest"] == sha256(body)
    manifest = json.loads(body)
    blobs = {}

    def fetch(desc):
        if desc["digest"] not in blobs:
            _, _, data = http_get(f"{base}/blobs/{desc['digest']}")
            assert sha256(data) == desc["digest"]
            assert len(data) == desc["size"]
            blobs[desc["digest"]] = data
        return blobs[desc["digest"]]

    for desc in [manifest["config"], *manifest["layers"]]:
        fetch(desc)
    return sha256(body), manifest, fetch


@pytest.mark.parametrize("variant", ["compat", "artifact"])
def test_pull_from_registry_like_istio(pushed, built, module_bytes, variant):
    digest, manifest, fetch = pull(pushed, variant)
    # The registry serves the very manifest that was built, so the digest in digests.txt is
    # the one to pin in a WasmPlugin.
    assert digest == read_digests(built[0])[variant]
    kind, module = extract_like_istio(manifest, fetch)
    assert kind == {"compat": "compat", "artifact": "oci"}[variant]
    assert module[:4] == b"\0asm"
    assert sha256(module) == sha256(module_bytes)


def test_pull_by_digest(pushed, built):
    for variant in ("compat", "artifact"):
        d = read_digests(built[0])[variant]
        digest, _, _ = pull(pushed, d)
        assert digest == d


def test_skopeo_inspect_compat(pushed, built, compat):
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{pushed}/sni-guard:compat"))
    assert info["Digest"] == read_digests(built[0])["compat"]
    assert info["Architecture"] == "wasm"
    assert info["Layers"] == [compat.manifest["layers"][0]["digest"]]
    assert info["Labels"]["org.opencontainers.image.version"] == compat.manifest["annotations"]["org.opencontainers.image.version"]


def test_skopeo_inspect_artifact(pushed, built, artifact):
    # containers/image only interprets manifests whose config is an image config; for an
    # artifact `skopeo inspect` needs --raw (see docs/oci.md).
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{pushed}/sni-guard:artifact")
    assert sha256(raw.encode()) == read_digests(built[0])["artifact"]
    assert json.loads(raw) == artifact.manifest
