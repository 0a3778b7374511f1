"""The README's quick start, run as written: `make run`, then the README's curl lines."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from harness.envoy import REPO


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def readme_curl_lines() -> list[str]:
    """The shell lines of the README's quick start that start with `curl`."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Quick start")
    section = text[start:text.index("\n## ", start + 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


@pytest.fixture(scope="module")
def make_run():
    if _busy(8443) or _busy(9901):
        pytest.skip("ports 8443/9901 are in use (is `make run` already running?)")
    proc = subprocess.Popen(["make", "run"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen("http://127.0.0.1:9901/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("make run: Envoy not ready in 300 s")
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_readme_curl_lines_show_200_then_421(make_run):
    lines = readme_curl_lines()
    assert len(lines) == 3, lines
    outputs = []
    for line in lines:
        # -w adds the status code, -s hides progress; the README lines are run otherwise as is.
        cmd = line.replace("curl ", "curl -s -w '\\nstatus=%{http_code}\\n' ", 1) \
            if "9901" not in line else line
        out = subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, (line, out.stderr)
        outputs.append(out.stdout)
    assert "hello from a.example.com" in outputs[0] and "status=200" in outputs[0]
    assert "Misdirected Request" in outputs[1] and "status=421" in outputs[1]
    assert 'sni_guard_misdirected{reason="listener_mismatch",protocol="http2"} 1' in outputs[2]
