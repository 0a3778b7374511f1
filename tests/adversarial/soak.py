"""`make soak`: a bounded soak of sni-guard in real Envoy (`--concurrency 2`, the demo bootstrap,
access log off). Rounds of six traffic classes driven by h2load, each with a known answer:

  match-h2 / match-h1        SNI a.example.com, :authority a.example.com:PORT      -> 200
  mismatch-h2 / mismatch-h1  SNI a.example.com, :authority b.example.com           -> 421
  nosni-h2 / nosni-h1        no SNI (URI host 127.0.0.1), :authority 127.0.0.1:PORT -> 200

h2load sends the URI's host as SNI when it is a name (`--connect-to` points it at Envoy) and none
for an IP address; `-H ':authority: ...'` sets the authority (Host for --h1). After every round:
h2load's status classes must be exactly the expected ones, sni-guard's counters must equal the
requests sent per class, and Envoy's RSS is sampled. At the end the RSS after the first round
(warm-up) is compared with the last. SOAK_REQUESTS (total, default 2,400,000) and SOAK_ROUNDS
(default 6) size the run, for each configuration.

The run is repeated with two sni-guard configurations in one VM (SOAK_CONFIGS, default
`demo,shared-vm`): the demo's gateway-b chain carries its own configuration (dry run) under the
same `vm_id`, so every worker's VM holds two root contexts and each request must be mapped to its
chain's. One class more then, on that chain:

  dryrun-h2                  SNI b.example.com, :authority a.example.com           -> 404
                             (counted as a would-be 421, answered by routing)

Exit status 0 only if every check held."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.envoy import Envoy, _walk, load_demo, wasm_filters  # noqa: E402

TOTAL = int(os.environ.get("SOAK_REQUESTS", "2400000"))
CONFIGS = os.environ.get("SOAK_CONFIGS", "demo,shared-vm").split(",")
ROUNDS = int(os.environ.get("SOAK_ROUNDS", "6"))
# RSS may grow this much after warm-up (allocator noise, stats), no more.
RSS_SLACK_KB = int(os.environ.get("SOAK_RSS_SLACK_KB", "8192"))

CLASSES = {
    # name: (h1?, SNI host in URI, authority override, expected status class)
    "match-h2": (False, "a.example.com", None, "2xx"),
    "mismatch-h2": (False, "a.example.com", "b.example.com", "4xx"),
    "nosni-h2": (False, "127.0.0.1", None, "2xx"),
    "match-h1": (True, "a.example.com", None, "2xx"),
    "mismatch-h1": (True, "a.example.com", "b.example.com", "4xx"),
    "nosni-h1": (True, "127.0.0.1", None, "2xx"),
}
SHARED_VM_CLASSES = {**CLASSES, "dryrun-h2": (False, "b.example.com", "a.example.com", "4xx")}

STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
DONE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout")


def soak_config(name: str) -> dict:
    config = load_demo()
    for d in _walk(config):
        d.pop("access_log", None)
    if name == "shared-vm":
        # The chains share one filter list (a YAML anchor): give gateway-b its own copy.
        chain = next(c for c in config["static_resources"]["listeners"][0]["filter_chains"]
                     if c["name"] == "gateway-b")
        hcm = chain["filters"][0]["typed_config"]
        hcm["http_filters"] = copy.deepcopy(hcm["http_filters"])
        guard = wasm_filters(chain)[0]["typed_config"]["config"]
        guard["configuration"]["value"] = json.dumps({"mode": "dry_run"})
        vm_ids = {f["typed_config"]["config"]["vm_config"]["vm_id"] for f in wasm_filters(config)}
        assert len(vm_ids) == 1, vm_ids
    return config


def h2load(port: int, cls: str, n: int) -> dict[str, int]:
    h1, host, authority, _ = SHARED_VM_CLASSES[cls]
    cmd = ["nice", "-n", "10", "h2load", "-n", str(n), "-c", "4", f"--connect-to=127.0.0.1:{port}"]
    cmd += ["--h1"] if h1 else ["-m", "16"]
    if authority:
        cmd += ["-H", f":authority: {authority}"]
    cmd.append(f"https://{host}:{port}/soak/{cls}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    s, d = STATUS.search(out), DONE.search(out)
    if not s or not d:
        raise SystemExit(f"h2load output not understood:\n{out}")
    return {"2xx": int(s[1]), "3xx": int(s[2]), "4xx": int(s[3]), "5xx": int(s[4]),
            "done": int(d[3]), "errored": int(d[6]), "timeout": int(d[7])}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def soak(name: str) -> list[str]:
    """One soak run of configuration `name`; the failures."""
    classes = SHARED_VM_CLASSES if name == "shared-vm" else CLASSES
    per = TOTAL // (ROUNDS * len(classes))
    sent = {c: 0 for c in classes}
    failures: list[str] = []
    rss: list[int] = []
    started = time.monotonic()
    with Envoy(soak_config(name)) as envoy:
        port, pid = envoy.listener_port(), envoy.proc.pid
        print(f"soak {name}: {ROUNDS} rounds x {len(classes)} classes x {per} requests, "
              f"Envoy pid {pid} --concurrency 2, RSS at start {rss_kb(pid)} kB")
        for r in range(ROUNDS):
            t0 = time.monotonic()
            for cls in classes:
                got = h2load(port, cls, per)
                want = classes[cls][3]
                sent[cls] += per
                bad = {k: v for k, v in got.items()
                       if (k == want and v != per) or (k != want and k != "done" and v)}
                if got["done"] != per or bad:
                    failures.append(f"round {r} {cls}: {got}")
            # Counters: sni-guard batches requests_checked on a 1 s tick.
            envoy.wait_counter("sni_guard_requests_checked", sum(sent.values()), timeout=5)
            prom = envoy.prometheus()
            expect = {
                "sni_guard_requests_checked": sum(sent.values()),
                "sni_guard_requests_without_sni": sent["nosni-h2"] + sent["nosni-h1"],
                'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"}':
                    sent["mismatch-h2"],
                'sni_guard_misdirected{reason="listener_mismatch",protocol="http1"}':
                    sent["mismatch-h1"],
            }
            if "dryrun-h2" in sent:
                expect['sni_guard_would_misdirect{reason="listener_mismatch",protocol="http2"}'] \
                    = sent["dryrun-h2"]
            for key, value in expect.items():
                if prom.get(key, 0) != value:
                    failures.append(f"round {r}: {key} = {prom.get(key, 0)}, expected {value}")
            others = {k: v for k, v in prom.items()
                      if k.startswith(("sni_guard_misdirected{", "sni_guard_would_misdirect{"))
                      and k not in expect and v}
            if others:
                failures.append(f"round {r}: unexpected 421 counters {others}")
            rss.append(rss_kb(pid))
            print(f"round {r}: {per * len(classes)} requests in {time.monotonic() - t0:.1f} s, "
                  f"RSS {rss[-1]} kB, counters {'ok' if not failures else 'MISMATCH'}",
                  flush=True)
    total = sum(sent.values())
    elapsed = time.monotonic() - started
    growth = rss[-1] - rss[0]
    print(f"soak {name}: {total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s); "
          f"RSS after warm-up {rss[0]} kB, at the end {rss[-1]} kB ({growth:+d} kB), "
          f"max {max(rss)} kB")
    if growth > RSS_SLACK_KB:
        failures.append(f"RSS grew {growth} kB after warm-up (slack {RSS_SLACK_KB} kB)")
    return [f"{name}: {f}" for f in failures]


def main() -> int:
    failures = [f for name in CONFIGS for f in soak(name)]
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
