#!/usr/bin/env python3
"""Package the release sni_guard.wasm as two OCI image layouts that Istio can pull.

    python3 oci/build.py [--wasm PATH] [--out DIR] [--version V]

Writes, under DIR (default target/oci):

  compat/    "compat" variant: an ordinary OCI image whose single layer is a gzipped tar
             holding plugin.wasm. Any registry and any OCI tool handles it.
  artifact/  "oci" variant: custom Wasm media types, the module stored raw (no tar, no gzip).
  digests.txt  the module's sha256 and the manifest digest of each image (also printed).

Both layouts are byte-for-byte reproducible: the only inputs are the module bytes, the
version string and SOURCE_DATE_EPOCH (default 0). Nothing reads the clock, the user name,
file modes on disk or dictionary order; JSON is written with sorted keys and no whitespace;
the tar entry has uid/gid 0, no owner names, mode 0644; gzip runs at a fixed level with
mtime 0 and no file name in its header.

Standard library only, so `make oci` needs nothing beyond python3.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

# Media types (OCI image spec, and the Wasm image spec Istio implements).
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"

# The file name Istio looks for inside a compat layer.
PLUGIN_FILE = "plugin.wasm"
# The root_id the bundled Envoy configuration uses (envoy/envoy.yaml); any root_id works.
ROOT_ID = "sni_guard"

GZIP_LEVEL = 9


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _uleb128(buf, pos):
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def wasm_exports(module):
    """Names of the functions/globals/... a Wasm binary exports (export section, id 7)."""
    if module[:4] != b"\0asm" or module[4:8] != b"\x01\0\0\0":
        raise ValueError("not a Wasm binary module (bad magic or version)")
    pos, names = 8, []
    while pos < len(module):
        section_id = module[pos]
        size, pos = _uleb128(module, pos + 1)
        end = pos + size
        if section_id == 7:
            count, p = _uleb128(module, pos)
            for _ in range(count):
                length, p = _uleb128(module, p)
                names.append(module[p : p + length].decode("utf-8"))
                p += length + 1  # name, then the export kind byte
                _, p = _uleb128(module, p)  # index
        pos = end
    return names


def abi_versions(module):
    """The proxy-wasm ABI versions the module declares (exports `proxy_abi_version_X_Y_Z`)."""
    found = sorted(n for n in wasm_exports(module) if n.startswith("proxy_abi_version_"))
    if not found:
        raise ValueError("the module exports no proxy_abi_version_* function: not a proxy-wasm filter")
    return found


class Layout:
    """An OCI image layout directory being written: content-addressed blobs plus index.json."""

    def __init__(self, path):
        self.path = path
        if os.path.isdir(path):
            shutil.rmtree(path)  # no stale blobs from an earlier build
        os.makedirs(os.path.join(path, "blobs", "sha256"))

    def blob(self, media_type, data, annotations=None):
        digest = sha256(data)
        with open(os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    def finish(self, manifest_desc, tag):
        entry = dict(manifest_desc)
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}
        with open(os.path.join(self.path, "index.json"), "wb") as f:
            f.write(canonical_json(index))
        with open(os.path.join(self.path, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))


def rfc3339(epoch):
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tar_gz_of_plugin(module, epoch):
    """(gzipped tar, uncompressed tar) holding one regular file, plugin.wasm."""
    raw = io.BytesIO()
    # USTAR: no PAX headers (which could carry atime/ctime); the name is short anyway.
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(module)
        info.mtime = epoch
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(module))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, compresslevel=GZIP_LEVEL, mtime=0) as f:
        f.write(tar_bytes)
    return gz.getvalue(), tar_bytes


def common_annotations(version, epoch):
    return {
        "org.opencontainers.image.created": rfc3339(epoch),
        "org.opencontainers.image.title": "sni-guard",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.description": "Envoy proxy-wasm filter: 421 when :authority does not match the TLS SNI",
        "org.opencontainers.image.licenses": "Apache-2.0",
    }


def build_compat(path, module, version, epoch):
    """compat variant: an ordinary OCI image. Istio takes the *last* layer, requires it to be
    tar+gzip and reads the entry whose base name is plugin.wasm; the manifest carries the
    annotation module.wasm.image/variant=compat that the Wasm image spec asks for."""
    out = Layout(path)
    gz, tar_bytes = tar_gz_of_plugin(module, epoch)
    layer = out.blob(TAR_GZIP_LAYER, gz)
    config = {
        # A proxy-wasm module is built for wasm32-unknown-unknown: no OS, no WASI. The OCI
        # spec takes GOARCH-style values; "wasm" is Go's name for the architecture and the
        # OS is left as "unknown" rather than claiming wasip1. Nobody runs this image as a
        # container; Istio ignores the config entirely.
        "architecture": "wasm",
        "os": "unknown",
        "created": rfc3339(epoch),
        "config": {"Labels": common_annotations(version, epoch)},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes)]},
        "history": [{"created": rfc3339(epoch), "created_by": "oci/build.py (sni-guard)"}],
    }
    config_desc = out.blob(IMAGE_CONFIG, canonical_json(config))
    annotations = common_annotations(version, epoch)
    annotations["module.wasm.image/variant"] = "compat"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": [layer],
        "annotations": annotations,
    }
    desc = out.blob(MANIFEST, canonical_json(manifest))
    out.finish(desc, version)
    return desc["digest"]


def runtime_config(module):
    # The runtime config of the Wasm image spec ("oci" variant): which runtime, which ABI,
    # which root ids. Envoy and Istio do not read it; it documents the module for tools.
    return {
        "type": "envoy_proxy",
        "abiVersions": abi_versions(module),
        "config": {"root_ids": [ROOT_ID]},
    }


def build_artifact(path, module, version, epoch):
    """"oci" variant (custom Wasm media types).

    Why two layers: Istio (pkg/wasm/imagefetcher.go, extractOCIArtifactImage) accepts this
    variant only when the manifest lists *exactly two* layers and one of them has the media
    type application/vnd.module.wasm.content.layer.v1+wasm, whose blob is the raw module.
    A manifest with the runtime config only as its `config` and the module as its single
    layer -- the shape `oras push` of one file would give -- is refused there with "number of
    layers must be 2 but got 1". So, as in the Wasm image spec this format comes from, the
    runtime config is a layer of its own (application/vnd.module.wasm.config.v1+json), next
    to the module layer. The manifest's `config` points at the same runtime-config blob with
    the same media type, so a client that reads `config` (oras, the spec's tooling) sees it
    too; it is one blob stored once, referenced twice.
    """
    out = Layout(path)
    rc = out.blob(
        WASM_CONFIG,
        canonical_json(runtime_config(module)),
        {"org.opencontainers.image.title": "runtime-config.json"},
    )
    wasm = out.blob(WASM_LAYER, module, {"org.opencontainers.image.title": PLUGIN_FILE})
    config_desc = {k: rc[k] for k in ("mediaType", "digest", "size")}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": [rc, wasm],
        "annotations": common_annotations(version, epoch),
    }
    desc = out.blob(MANIFEST, canonical_json(manifest))
    out.finish(desc, version)
    return desc["digest"]


def cargo_version(cargo_toml):
    """The [package] version of the root Cargo.toml (a tiny reader; no tomllib on 3.10)."""
    section = None
    with open(cargo_toml, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[package]" and line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    raise ValueError(f"no [package] version in {cargo_toml}")


def main(argv=None):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", default=os.path.join(root, "target/wasm32-unknown-unknown/release/sni_guard.wasm"))
    p.add_argument("--out", default=os.path.join(root, "target/oci"))
    p.add_argument("--version", default=None, help="image version/tag (default: Cargo.toml's)")
    args = p.parse_args(argv)

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    version = args.version or cargo_version(os.path.join(root, "Cargo.toml"))
    with open(args.wasm, "rb") as f:
        module = f.read()

    os.makedirs(args.out, exist_ok=True)
    compat = build_compat(os.path.join(args.out, "compat"), module, version, epoch)
    artifact = build_artifact(os.path.join(args.out, "artifact"), module, version, epoch)
    lines = [
        f"module   {sha256(module)}  ({len(module)} bytes, {os.path.relpath(args.wasm, root)})",
        f"compat   {compat}  (manifest of {os.path.relpath(args.out, root)}/compat)",
        f"artifact {artifact}  (manifest of {os.path.relpath(args.out, root)}/artifact)",
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "digests.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
