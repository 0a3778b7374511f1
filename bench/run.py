"""The sni-guard benchmark: what the filter costs Envoy per request, next to the alternatives.

One Envoy per configuration (`--concurrency 1`, pinned to core 0), all started up front; h2load
and the nginx upstream pinned to core 1. Every round visits every (configuration, backend) pair,
in a rotated order, so that background load on the shared machine spreads over all of them
instead of landing on one. Per pair and round:

* warm-up: h2load for a second or so (also sizes the measured run);
* throughput: h2load with fixed connections x streams and a fixed request count; Envoy's CPU
  time (utime + stime of the whole process from /proc/PID/stat) over the run / requests = CPU
  microseconds per request, the main figure; requests per second as h2load saw them;
* latency: h2load at a fixed offered rate well below saturation (`--rps`), per-request log,
  p50/p99.

The TLS server name really is a.example.com: h2load connects with `--connect-to` to 127.0.0.1
and takes SNI and `:authority` from the URI, and the bench listener has a single filter chain
that matches only that server name (no default chain): a connection with any other SNI, or none,
would be closed before HTTP. The sni-guard configurations also check that every request was
counted as checked and none as without SNI.

Writes bench/RESULTS.md, bench/results.json and bench/cpu_per_request.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
ENVOY = REPO / ".venv" / "bin" / "envoy"
WASM_DIR = REPO / "target" / "wasm32-unknown-unknown" / "release"
SNI_GUARD_WASM = WASM_DIR / "sni_guard.wasm"
EMPTY_WASM = WASM_DIR / "empty_filter.wasm"
CERTS = REPO / "envoy" / "certs"
HOST = "a.example.com"
ENVOY_CORE, CLIENT_CORE = "0", "1"
# Envoy, h2load and nginx run at the highest nice priority: other engineers' builds share these two
# cores, and a benchmark process that is preempted mid-slice pays for cold caches afterwards.
# (nice, not a real-time class: the others still get their share when the benchmark waits.)
PRIORITY = ["nice", "-n", "-20"] if os.geteuid() == 0 else []
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The listener hostnames of the large configuration: the request's host plus 9,999 others, a mix of
# exact names and wildcards spread over many listeners (as a big multi-tenant gateway has).
LARGE_HOSTNAMES = 10_000


def large_listeners() -> list[dict]:
    listeners = [{"name": "bench-a", "hostnames": [HOST]}]
    for i in range(1, LARGE_HOSTNAMES):
        name = f"*.t{i}.tenants.example.net" if i % 4 == 0 else f"app{i}.svc{i % 97}.example.org"
        listeners.append({"name": f"l{i}", "hostnames": [name]})
    return listeners


@dataclass
class Config:
    key: str
    label: str
    filters: list[dict] = field(default_factory=list)
    wasm: Path | None = None
    sni_guard: bool = False
    # Entries added to the connection manager's `access_log`.
    access_log: list[dict] = field(default_factory=list)


def wasm_filter(name: str, path: Path, configuration: str) -> dict:
    return {
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(path)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "fail_open": False,
            },
        },
    }


# The bench listener's one filter chain is `gateway-a`; the chain-bound configurations tell the
# filter so (`this_listener`), beside a second listener as a gateway with two would have.
CHAIN = "gateway-a"
CHAIN_LISTENERS = [{"name": CHAIN, "hostnames": [HOST]},
                   {"name": "gateway-b", "hostnames": ["b.example.com"]}]


def chain_bound(listeners: list[dict], this: str, **extra) -> str:
    return json.dumps({"listeners": listeners, "this_listener": this, **extra})


def stats_access_log() -> dict:
    """The shipped stats access logger entry that counts the response flags in Envoy itself."""
    return yaml.safe_load((REPO / "envoy" / "flags-stats-access-log.yaml").read_text())


def lua_filter() -> dict:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": (BENCH / "lua-recipe.lua").read_text()},
        },
    }


def configs() -> list[Config]:
    return [
        Config("none", "no filter"),
        Config("empty", "empty proxy-wasm", [wasm_filter("empty", EMPTY_WASM, "")], EMPTY_WASM),
        Config("lua", "Lua recipe", [lua_filter()]),
        Config("default", "sni-guard", [wasm_filter("sni_guard", SNI_GUARD_WASM, "{}")],
               SNI_GUARD_WASM, True),
        Config("large", "sni-guard 10k hostnames",
               [wasm_filter("sni_guard", SNI_GUARD_WASM,
                            json.dumps({"listeners": large_listeners()}))],
               SNI_GUARD_WASM, True),
        Config("dry_run", "sni-guard dry run",
               [wasm_filter("sni_guard", SNI_GUARD_WASM, json.dumps({"mode": "dry_run"}))],
               SNI_GUARD_WASM, True),
        Config("chain", "sni-guard chain-bound",
               [wasm_filter("sni_guard", SNI_GUARD_WASM, chain_bound(CHAIN_LISTENERS, CHAIN))],
               SNI_GUARD_WASM, True),
        Config("chain_noflags", "sni-guard chain-bound, flags off",
               [wasm_filter("sni_guard", SNI_GUARD_WASM,
                            chain_bound(CHAIN_LISTENERS, CHAIN, response_flags="off"))],
               SNI_GUARD_WASM, True),
        Config("chain_native", "sni-guard chain-bound, flags off + stats access logger",
               [wasm_filter("sni_guard", SNI_GUARD_WASM,
                            chain_bound(CHAIN_LISTENERS, CHAIN, response_flags="off"))],
               SNI_GUARD_WASM, True, [stats_access_log()]),
        Config("chain_large", "sni-guard chain-bound 10k hostnames",
               [wasm_filter("sni_guard", SNI_GUARD_WASM,
                            chain_bound(large_listeners(), "bench-a"))],
               SNI_GUARD_WASM, True),
        Config("noflags", "sni-guard flags off",
               [wasm_filter("sni_guard", SNI_GUARD_WASM, json.dumps({"response_flags": "off"}))],
               SNI_GUARD_WASM, True),
        Config("native_flags", "stats access logger alone (no filter)", [], None, False,
               [stats_access_log()]),
    ]


BACKENDS = {"direct": "direct response", "proxied": "proxied (nginx upstream)"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap(cfg: Config, admin_port: int, port: int, upstream_port: int) -> dict:
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": str(CERTS / "wildcard.crt")},
                    "private_key": {"filename": str(CERTS / "wildcard.key")},
                }],
            },
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager."
                 "v3.HttpConnectionManager",
        "stat_prefix": "bench",
        **({"access_log": cfg.access_log} if cfg.access_log else {}),
        "http_filters": [*cfg.filters, router],
        "route_config": {
            "name": "bench",
            "virtual_hosts": [{
                "name": "a",
                "domains": [HOST, f"{HOST}:*"],
                "routes": [
                    {"match": {"prefix": "/direct"},
                     "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}},
                    {"match": {"prefix": "/proxied"}, "route": {"cluster": "upstream"}},
                ],
            }],
        },
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "https",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener."
                                 "tls_inspector.v3.TlsInspector"},
                }],
                # One chain, matched on the SNI only: requests measured here really carried
                # SNI a.example.com.
                "filter_chains": [{
                    "name": "gateway-a",
                    "filter_chain_match": {"server_names": [HOST]},
                    "transport_socket": tls,
                    "filters": [{"name": "envoy.filters.network.http_connection_manager",
                                 "typed_config": hcm}],
                }],
            }],
            "clusters": [{
                "name": "upstream",
                "connect_timeout": "1s",
                "type": "STATIC",
                "load_assignment": {
                    "cluster_name": "upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": upstream_port}}}}]}],
                },
            }],
        },
    }


class Envoy:
    def __init__(self, cfg: Config, workdir: Path, upstream_port: int):
        self.cfg = cfg
        self.admin_port, self.port = free_port(), free_port()
        self.dir = workdir / cfg.key
        self.dir.mkdir()
        path = self.dir / "envoy.yaml"
        path.write_text(yaml.safe_dump(bootstrap(cfg, self.admin_port, self.port,
                                                 upstream_port), sort_keys=False))
        self.log = self.dir / "envoy.log"
        self.proc = subprocess.Popen(
            [*PRIORITY, "taskset", "-c", ENVOY_CORE, str(ENVOY), "-c", str(path),
             "--concurrency", "1", "--base-id", str(self.admin_port), "--log-level", "warn",
             "--log-path", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.dir)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"Envoy ({self.cfg.key}) exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready",
                                            timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"Envoy ({self.cfg.key}) not ready:\n{self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        # Fields after the parenthesised command name: utime is field 14, stime 15 (1-based).
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        pages = int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1])
        return pages * PAGE / 2**20

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}/stats?format=json&usedonly", timeout=5) as r:
            data = json.load(r)
        return {s["name"]: s["value"] for s in data["stats"] if "value" in s}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    d = workdir / "nginx"
    d.mkdir()
    conf = d / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
# Every Envoy keeps up to 64 upstream connections open (4 connections x 16 streams) for the whole
# run; fifteen configurations need more than nginx's default 1024.
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
    proc = subprocess.Popen([*PRIORITY, "taskset", "-c", CLIENT_CORE, "nginx", "-p", str(d),
                             "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nginx did not start:\n{(d / 'error.log').read_text()}")


H2LOAD_DONE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded")
H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2LOAD_RATE = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")


# The `:authority` h2load sends: the host alone, as browsers send it to a gateway on port 443
# (the default), or host:port (`--authority-with-port`), as clients of a non-default port do.
AUTHORITY_WITH_PORT = False


def h2load(port: int, backend: str, args: list[str]) -> dict:
    authority = [] if AUTHORITY_WITH_PORT else ["-H", f":authority: {HOST}"]
    cmd = [*PRIORITY, "taskset", "-c", CLIENT_CORE, "h2load", f"--connect-to=127.0.0.1:{port}",
           *authority, *args, f"https://{HOST}:{port}/{backend}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    done, status, rate = (H2LOAD_DONE.search(text), H2LOAD_STATUS.search(text),
                          H2LOAD_RATE.search(text))
    if out.returncode != 0 or not (done and status and rate):
        sys.exit(f"h2load failed: {' '.join(cmd)}\n{text}")
    total, _, n_done, ok = map(int, done.groups())
    ok2xx = int(status.group(1))
    if not (total == n_done == ok == ok2xx):
        sys.exit(f"h2load: not every request succeeded with 2xx: {' '.join(cmd)}\n{text}")
    seconds = float(rate.group(1)) / (1000 if rate.group(2) == "ms" else 1)
    return {"requests": total, "seconds": seconds, "rps": float(rate.group(3))}


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine, all cores (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    # user nice system idle iowait irq softirq steal (guest time is already inside user).
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def warm_up(envoy: Envoy, backend: str, a: argparse.Namespace) -> int:
    """Runs load for a while (JIT tiers, caches, upstream connections) and returns the request
    count of one measured slice at this pair's own rate."""
    warm = h2load(envoy.port, backend,
                  ["-c", str(a.connections), "-m", str(a.streams), "-D", str(a.warmup)])
    return max(1000, int(warm["rps"] * a.seconds))


def counter_delta(envoy: Envoy, before: dict, name: str) -> int:
    return envoy.stats().get(name, 0) - before.get(name, 0)


def throughput(envoy: Envoy, backend: str, n: int, a: argparse.Namespace,
               ours: list[int]) -> dict:
    """One measured slice: n requests; Envoy's CPU over exactly those. Also estimates how much
    CPU other people's processes took meanwhile (machine busy time minus ours), the noise."""
    before = envoy.stats()
    load_before = loadavg()
    ours0 = sum(process_cpu_seconds(p) for p in ours) + children_cpu_seconds()
    busy0, wall0 = machine_busy_seconds(), time.monotonic()
    cpu0 = envoy.cpu_seconds()
    run = h2load(envoy.port, backend, ["-c", str(a.connections), "-m", str(a.streams),
                                       "-n", str(n)])
    cpu1 = envoy.cpu_seconds()
    busy1, wall1 = machine_busy_seconds(), time.monotonic()
    ours1 = sum(process_cpu_seconds(p) for p in ours) + children_cpu_seconds()
    others = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (2 * (wall1 - wall0))
    # Envoy's own count of answered requests must agree with h2load's.
    answered = counter_delta(envoy, before, "http.bench.downstream_rq_2xx")
    if answered != n:
        sys.exit(f"{envoy.cfg.key}/{backend}: Envoy answered {answered} 2xx, h2load sent {n}")
    if envoy.cfg.sni_guard:
        # Every request was compared, none lacked SNI. Counters may lag by a flush period when
        # batched: wait for them (in time, never in count).
        checked = "wasmcustom.sni_guard.requests_checked"
        deadline = time.monotonic() + 3
        while counter_delta(envoy, before, checked) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        got = counter_delta(envoy, before, checked)
        without = envoy.stats().get("wasmcustom.sni_guard.requests_without_sni", 0)
        if got < n or without:
            sys.exit(f"{envoy.cfg.key}/{backend}: sni-guard checked {got} of {n} requests, "
                     f"{without} without SNI")
    return {"cpu_us_per_request": (cpu1 - cpu0) * 1e6 / n, "rps": run["rps"],
            "loadavg": load_before, "others_cpu_share": others}


def latency(envoy: Envoy, backend: str, a: argparse.Namespace, workdir: Path) -> list[int]:
    """Per-request durations (µs) at a fixed offered rate below saturation."""
    log = workdir / f"latency-{envoy.cfg.key}-{backend}.log"
    per_client = max(1, a.latency_rps // a.connections)
    h2load(envoy.port, backend, ["-c", str(a.connections), "-m", "4", "--rps", str(per_client),
                                 "-n", str(per_client * a.connections * a.latency_seconds),
                                 "--log-file", str(log)])
    durations = [int(line.split("\t")[2]) for line in log.read_text().splitlines() if line]
    log.unlink()
    return durations


def versions() -> dict:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "kernel": platform.release(),
        "envoy": first_line([str(ENVOY), "--version"]).split("version:")[-1].strip(),
        "h2load": first_line(["h2load", "--version"]),
        "nginx": first_line(["nginx", "-v"]),
        "rustc": first_line(["rustc", "--version"]),
        "sni-guard commit": first_line(["git", "-C", str(REPO), "describe", "--always",
                                        "--dirty"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 15)))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 1.5)),
                   help="target length of each measured throughput slice")
    p.add_argument("--warmup", default="3s")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--latency-rps", type=int, default=2000, help="offered rate, all connections")
    p.add_argument("--latency-seconds", type=int, default=2)
    p.add_argument("--latency-rounds", type=int, default=2)
    p.add_argument("--configs", default=os.environ.get("BENCH_CONFIGS", ""),
                   help="comma-separated subset of: none,empty,lua,default,large,dry_run,chain,"
                        "chain_noflags,chain_native,chain_large,noflags,native_flags")
    p.add_argument("--backends", default=os.environ.get("BENCH_BACKENDS", "direct,proxied"))
    p.add_argument("--variant", action="append", default=[], metavar="KEY=PATH.wasm",
                   help="also measure another build of sni-guard (default configuration), "
                        "e.g. the previous commit's, for an A/B comparison")
    p.add_argument("--authority-with-port", action="store_true",
                   help="send :authority as host:port instead of the host alone")
    p.add_argument("--out", type=Path, default=BENCH)
    a = p.parse_args()
    global AUTHORITY_WITH_PORT
    AUTHORITY_WITH_PORT = a.authority_with_port

    for tool in ("h2load", "nginx", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (make bench installs it)")
    variants = []
    for v in a.variant:
        key, _, path = v.partition("=")
        variants.append(Config(key, f"sni-guard ({key})",
                               [wasm_filter("sni_guard", Path(path).resolve(), "{}")],
                               Path(path).resolve(), False))
    chosen = [c for c in configs() + variants
              if not a.configs or c.key in a.configs.split(",") or c in variants]
    backends = [b for b in BACKENDS if b in a.backends.split(",")]
    for c in chosen:
        if c.wasm and not c.wasm.exists():
            sys.exit(f"{c.wasm} missing (make bench builds it)")

    workdir = Path(tempfile.mkdtemp(prefix="sni-guard-bench-"))
    nginx, upstream_port = start_nginx(workdir)
    envoys: list[Envoy] = []
    # Per configuration and backend: the throughput slices, one per round ...
    results: dict[str, dict[str, list[dict]]] = {c.key: {b: [] for b in backends}
                                                 for c in chosen}
    # ... and the latency percentiles (pooled over latency rounds) and RSS.
    summary: dict[str, dict[str, dict]] = {c.key: {} for c in chosen}
    try:
        for c in chosen:
            envoys.append(Envoy(c, workdir, upstream_port))
        for e in envoys:
            e.wait_ready()
        pairs = [(e, b) for e in envoys for b in backends]
        ours = [e.proc.pid for e in envoys] + [nginx.pid]
        sizes = {}
        for e, b in pairs:
            sizes[(e.cfg.key, b)] = warm_up(e, b, a)
        # Short slices, many rounds, rotated order: the host's noise (other tenants of the
        # machine) drifts over seconds, so neighbouring slices of different configurations see
        # about the same conditions and per-round differences cancel most of it.
        for r in range(a.rounds):
            shift = r * len(pairs) // max(1, a.rounds)
            for e, b in pairs[shift:] + pairs[:shift]:
                m = throughput(e, b, sizes[(e.cfg.key, b)], a, ours)
                results[e.cfg.key][b].append(m)
                print(f"round {r + 1:2}/{a.rounds} {e.cfg.key:8} {b:8} "
                      f"{m['cpu_us_per_request']:7.2f} us/req {m['rps']:9.0f} req/s "
                      f"others {m['others_cpu_share']:.0%} of 2 cores", flush=True)
        durations: dict[tuple[str, str], list[int]] = {}
        for _ in range(a.latency_rounds):
            for e, b in pairs:
                durations.setdefault((e.cfg.key, b), []).extend(latency(e, b, a, workdir))
        for e, b in pairs:
            d = durations[(e.cfg.key, b)]
            summary[e.cfg.key][b] = {"p50_us": percentile(d, 50), "p99_us": percentile(d, 99),
                                     "latency_requests": len(d), "rss_mib": e.rss_mib()}
            print(f"{e.cfg.key:8} {b:8} p50 {percentile(d, 50)} us p99 {percentile(d, 99)} us "
                  f"rss {e.rss_mib():.1f} MiB", flush=True)
    finally:
        for e in envoys:
            e.stop()
        nginx.terminate()
        nginx.wait()
    shutil.rmtree(workdir, ignore_errors=True)

    meta = {"versions": versions(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(a).items()},
            "wasm_bytes": {c.key: c.wasm.stat().st_size for c in chosen if c.wasm}}
    labels = {c.key: c.label for c in chosen}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(
        {"meta": meta, "labels": labels, "results": results, "summary": summary}, indent=1))
    import report  # noqa: E402  (same directory; matplotlib only needed from here on)
    report.write(a.out, meta, labels, results, summary)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
