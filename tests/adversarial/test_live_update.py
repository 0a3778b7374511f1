"""Configuration and module updates pushed to a running Envoy, the way Istio pushes a changed
WasmPlugin (ECDS; here from a file-based config source, `harness.ecds`), under bounded h2load
load over HTTP/2 and TLS.

Four request classes whose answers tell the four configurations apart:

    class  SNI  :authority     strict  groups  dry_run  per-listener (b off)
    aa     a    a.example.com  200     200     200      200
    ab     a    b.example.com  421     421     404      404
    ba     b    a.example.com  421     421     404      421
    au     a    unknown.test   421     404     404      404

Every request is judged against the time line of pushes: a request that started before a push
must have the old configuration's answer; one that started after the new configuration was seen
in force (on fresh connections) plus a grace for the other worker, the new one's; in between,
either. Invalid configurations and a module that does not load are pushed too: Envoy must reject
them (`update_rejected`) and the previous configuration must go on judging, with no gap."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from harness.clients import H2Connection
from harness.ecds import EcdsEnvoy, filter_config
from harness.envoy import WASM

A, B, UNKNOWN = "a.example.com", "b.example.com", "unknown.test"
CLASSES = {"aa": (A, A), "ab": (A, B), "ba": (B, A), "au": (A, UNKNOWN)}

STRICT = "{}"
GROUPS = json.dumps({"listeners": [{"hostnames": [A]}, {"hostnames": [B]}]})
DRY_RUN = json.dumps({"mode": "dry_run"})
PER_LISTENER = json.dumps({"listeners": [{"hostnames": [A], "mode": "enforce"},
                                         {"hostnames": [B], "mode": "off"}]})
EXPECTED = {
    STRICT: {"aa": 200, "ab": 421, "ba": 421, "au": 421},
    GROUPS: {"aa": 200, "ab": 421, "ba": 421, "au": 404},
    DRY_RUN: {"aa": 200, "ab": 404, "ba": 404, "au": 404},
    PER_LISTENER: {"aa": 200, "ab": 404, "ba": 421, "au": 404},
}

# Refused at load, each naming its field.
INVALID = [
    ('{"listeners": []}', "field `listeners`"),
    ('{"listeners": [{"name": "all"}]}', "field `listeners`"),
    ('{"mode": "enforce", "listners": []}', "field `listners`"),
]

SWAPS = 20
SLOT = 1.5             # seconds between pushes
IN_FORCE_WITHIN = 10.0  # a pushed configuration is seen in force within this time
GRACE = 2.0            # after that, for the worker the probes may not have reached


def probe(envoy: EcdsEnvoy, tag: str) -> dict[str, int]:
    """One request of each class, each on a fresh connection (new connections spread over
    Envoy's workers)."""
    got = {}
    for cls, (sni, authority) in CLASSES.items():
        with H2Connection(envoy.listener_port(), sni=sni, verify_name=False) as conn:
            got[cls] = conn.request(authority, path=f"/probe/{cls}/{tag}").status
    return got


def wait_in_force(envoy: EcdsEnvoy, plugin: str, tag: str) -> float | None:
    """Probes until two rounds in a row answer as `plugin` does; the time it took, or None."""
    started = time.monotonic()
    streak = 0
    while time.monotonic() - started < IN_FORCE_WITHIN:
        streak = streak + 1 if probe(envoy, tag) == EXPECTED[plugin] else 0
        if streak == 2:
            return time.monotonic() - started
    return None


def start_load(envoy: EcdsEnvoy, seconds: float, rps: int = 10) -> list[subprocess.Popen]:
    """One h2load per class: 2 connections, 2 streams each, `rps` requests per second per
    connection, bounded in count (and by `seconds` of run time at that rate)."""
    port = envoy.listener_port()
    procs = []
    for cls, (sni, authority) in CLASSES.items():
        n = int(seconds * rps * 2)
        cmd = ["nice", "-n", "10", "h2load", "-n", str(n), "-c", "2", "-m", "2",
               f"--rps={rps}", f"--connect-to=127.0.0.1:{port}",
               "-H", f":authority: {authority}", f"https://{sni}:{port}/live/{cls}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    return procs


STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
DONE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout")


def finish_load(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Waits for every h2load; returns their outputs."""
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=10)
        outputs.append(out)
    return outputs


LINE = re.compile(r"^\[(\S+)\] chain=\S+ sni=\S+ \S+ \S+ authority=\S+ path=/(live|probe)/(\w+)\S* "
                  r"status=(\d+) flags=\S+ verdict=(\S+) ")


def judged_requests(envoy: EcdsEnvoy) -> list[tuple[float, str, str, int, str]]:
    """(start time, `live` or `probe`, class, status, verdict) of every request in the access
    log."""
    out = []
    for line in envoy.access_log():
        m = LINE.match(line)
        if m:
            start = datetime.fromisoformat(m[1].replace("Z", "+00:00")).timestamp()
            out.append((start, m[2], m[3], int(m[4]), m[5]))
    return out


def settled_requests(envoy: EcdsEnvoy, timeout: float = 15.0) -> list[tuple]:
    """The judged requests once the access log and `requests_checked` have caught up with each
    other (both are written asynchronously: log lines on a flush interval, the counter on a 1 s
    tick); what there is after `timeout` otherwise, for the assertions to report."""
    deadline = time.monotonic() + timeout
    while True:
        requests = judged_requests(envoy)
        if envoy.counter("sni_guard_requests_checked") == len(requests) \
                or time.monotonic() > deadline:
            return requests
        time.sleep(0.2)


def in_force(timeline: list[tuple[float, float, str]], start: float) -> list[str]:
    """The configurations that may have judged a request started at `start`. `timeline` is
    [(pushed_at, in_force_at, plugin)] of the configurations Envoy took, in order: one may judge
    from its push (less the access log's millisecond) until its successor was seen in force,
    plus the grace."""
    plugins = []
    for i, (pushed, _, plugin) in enumerate(timeline):
        ends = timeline[i + 1][1] + GRACE if i + 1 < len(timeline) else float("inf")
        if pushed - 0.001 <= start <= ends:
            plugins.append(plugin)
    return plugins


def allowed(timeline: list[tuple[float, float, str]], start: float, cls: str) -> set[int]:
    """The answers a request of `cls` started at `start` may have."""
    return {EXPECTED[p][cls] for p in in_force(timeline, start)}


def module_copy(tmp_path: Path, tag: str) -> Path:
    """The module with a custom section appended: another file, another sha256, same code (a
    new release of the module as far as Envoy can tell)."""
    payload = f"sni-guard-test-build {tag}".encode()
    name = b"\x0bsni-guard-v"
    section = name + payload
    copy = tmp_path / f"sni_guard-{tag}.wasm"
    copy.write_bytes(WASM.read_bytes() + b"\x00" + bytes([len(section)]) + section)
    return copy


def test_twenty_swaps_under_load_never_open_a_gap(tmp_path):
    assert shutil.which("h2load"), "h2load missing: `make soak` or apt-get install nghttp2-client"
    plan = [STRICT, GROUPS, DRY_RUN, PER_LISTENER] * (SWAPS // 4)
    new_module = module_copy(tmp_path, "v2")
    with EcdsEnvoy(STRICT) as envoy:
        assert wait_in_force(envoy, STRICT, "start") is not None
        timeline = [(0.0, 0.0, STRICT)]
        pushes, times = [], []
        procs = start_load(envoy, seconds=(SWAPS + 4) * SLOT)
        try:
            for i, plugin in enumerate(plan[1:] + [STRICT]):
                slot_end = time.monotonic() + SLOT
                # A new module version halfway, with the configuration that is due.
                wasm = new_module if i == SWAPS // 2 else WASM
                pushed = time.time()
                assert envoy.push(filter_config(plugin, wasm=wasm)) == "reloaded", plugin
                took = wait_in_force(envoy, plugin, f"swap{i}")
                assert took is not None, f"swap {i} to {plugin} not in force in {IN_FORCE_WITHIN}s"
                timeline.append((pushed, time.time(), plugin))
                times.append(took)
                pushes.append(plugin)
                # Every fifth slot, an invalid configuration or a module that does not load:
                # rejected, and the one in force stays in force.
                if i % 5 == 2:
                    bad_plugin, field = INVALID[(i // 5) % len(INVALID)]
                    assert envoy.push(filter_config(bad_plugin)) == "rejected", bad_plugin
                    assert envoy.wait_log(field)
                    assert wait_in_force(envoy, plugin, f"kept{i}") is not None
                elif i % 5 == 4:
                    corrupt = tmp_path / "corrupt.wasm"
                    corrupt.write_bytes(b"\x00asm\x01\x00\x00\x00 truncated")
                    assert envoy.push(filter_config(plugin, wasm=corrupt)) == "rejected"
                    assert wait_in_force(envoy, plugin, f"kept{i}") is not None
                time.sleep(max(0.0, slot_end - time.monotonic()))
        finally:
            outputs = finish_load(procs, timeout=(SWAPS + 10) * SLOT)
        rejected = envoy.stat("update_rejected")
        requests = settled_requests(envoy)
        wrong = [(round(t, 3), cls, status, sorted(allowed(timeline, t, cls)))
                 for t, _, cls, status, _ in requests if status not in allowed(timeline, t, cls)]
        assert not wrong, f"{len(wrong)} requests judged by no configuration in force: {wrong[:10]}"
        assert not [r for r in requests if r[3] >= 500]
        for out in outputs:
            s, d = STATUS.search(out), DONE.search(out)
            assert s and d, out
            assert int(s[4]) == 0 and int(d[6]) == 0 and int(d[7]) == 0, out
        load = sum(1 for r in requests if r[1] == "live")
        assert load > SWAPS * 20, f"only {load} requests: the load did not run"
        # Counters add up: every request was checked; every 421 in the log was counted as sent.
        prom = envoy.prometheus()
        assert prom.get("sni_guard_requests_checked") == len(requests)
        sent = sum(v for k, v in prom.items() if k.startswith("sni_guard_misdirected{"))
        assert sent == sum(1 for r in requests if r[3] == 421)
        # The access log's verdict agrees with the answer, and with the counters, request by
        # request.
        verdicts = {(status, verdict) for *_, status, verdict in requests}
        assert verdicts <= {(200, "-"), (404, "-"), (421, "misdirected:listener_mismatch"),
                            (404, "would_misdirect:listener_mismatch")}, verdicts
        would = sum(v for k, v in prom.items() if k.startswith("sni_guard_would_misdirect{"))
        assert would == sum(1 for r in requests if r[4].startswith("would_misdirect:"))
        assert would > 0 and sent > 0
        assert rejected == 8
    print(f"\nlive update: {len(requests)} requests, {len(pushes)} swaps, in force after "
          f"max {max(times):.2f} s (median {sorted(times)[len(times) // 2]:.2f} s), "
          f"{rejected} updates rejected")


@pytest.mark.parametrize("policy", ["FAIL_RELOAD", "FAIL_CLOSED"])
def test_module_updates_under_each_recommended_policy(tmp_path, policy):
    """A new module version is taken and enforces at once; a module that does not load, or a
    valid module with a configuration it refuses, is rejected and the previous one goes on."""
    with EcdsEnvoy(GROUPS) as envoy:
        assert envoy.push(filter_config(GROUPS, failure_policy=policy)) == "reloaded"
        assert wait_in_force(envoy, GROUPS, "v1") is not None
        v2 = module_copy(tmp_path, f"{policy}-v2")
        assert envoy.push(filter_config(STRICT, wasm=v2, failure_policy=policy)) == "reloaded"
        assert wait_in_force(envoy, STRICT, "v2") is not None
        corrupt = tmp_path / "corrupt.wasm"
        corrupt.write_bytes(b"\x00asm\x01\x00\x00\x00 not a module")
        assert envoy.push(filter_config(DRY_RUN, wasm=corrupt, failure_policy=policy)) \
            == "rejected"
        assert envoy.wait_log("Unable to create Wasm plugin sni_guard")
        assert wait_in_force(envoy, STRICT, "kept-after-corrupt") is not None
        missing = tmp_path / "absent.wasm"
        assert envoy.push(filter_config(DRY_RUN, wasm=missing, failure_policy=policy)) \
            == "rejected"
        assert wait_in_force(envoy, STRICT, "kept-after-missing") is not None
        v3 = module_copy(tmp_path, f"{policy}-v3")
        assert envoy.push(filter_config('{"listeners": []}', wasm=v3, failure_policy=policy)) \
            == "rejected"
        assert wait_in_force(envoy, STRICT, "kept-after-refused") is not None
        assert envoy.stat("update_rejected") == 3
        assert not [line for line in envoy.access_log() if " status=5" in line]
