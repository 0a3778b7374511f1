"""Starting and stopping the real servers the tests run (Envoy, Prometheus)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from typing import Callable


def wait_ready(proc: subprocess.Popen, url: str, timeout: float,
               on_exit: Callable[[int], Exception]) -> bool:
    """Polls `url` until it answers 200 (True) or `timeout` passes (False). Raises
    `on_exit(returncode)` as soon as the process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise on_exit(proc.returncode)
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
