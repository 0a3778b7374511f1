"""Real browsers, headless: Debian's Chromium driven over the Chrome DevTools Protocol and
Firefox ESR over WebDriver BiDi. Both protocols are JSON messages on a WebSocket the browser
opens itself (`--remote-debugging-port`), so no driver binary is involved and nothing is
downloaded.

Each browser runs in a fresh temporary directory that is its HOME and profile. The test CA is
trusted through a private NSS database there (`certutil`), never the machine's trust store, and
no certificate-error switch is used: the browser sees a valid certificate and coalesces exactly
as it does for users. The test hostnames resolve to 127.0.0.1 and every other name fails to
resolve (Chromium) or resolves to 127.0.0.1 (Firefox), so no traffic leaves the loopback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.sync.client import ClientConnection, connect

from harness.envoy import CA

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
FIREFOX = os.environ.get("FIREFOX_BIN", "/usr/bin/firefox-esr")
HOSTS = ("a.example.com", "b.example.com", "c.example.com")
START_TIMEOUT = 60.0


def trust_test_ca(nss_dir: Path) -> None:
    """Creates an NSS database in `nss_dir` that trusts the test CA for TLS servers."""
    nss_dir.mkdir(parents=True, exist_ok=True)
    db = f"sql:{nss_dir}"
    subprocess.run(["certutil", "-N", "--empty-password", "-d", db], check=True)
    subprocess.run(["certutil", "-A", "-d", db, "-n", "sni-guard test CA", "-t", "C,,",
                    "-i", str(CA)], check=True)


@dataclass
class Visit:
    """What a top-level navigation ended with, as the browser saw it."""
    url: str
    status: int | None  # HTTP status of the main document; None when no response came
    text: str           # the page's visible text
    error: str = ""     # the browser's network error, if it shows an error page


class Wire:
    """One WebSocket carrying JSON commands (`id`, `method`, `params`) and their answers, with
    the events that arrive in between kept in `events`."""

    def __init__(self, url: str):
        # `legacy=True`: a connection kept open across calls, not a context manager.
        self.ws: ClientConnection = connect(url, max_size=None, open_timeout=20, legacy=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0,
             **extra) -> dict:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {},
                                 **extra}))
        deadline = time.monotonic() + timeout
        while True:
            msg = self._receive(deadline, method)
            if msg.get("id") != msg_id:
                self.events.append(msg)
                continue
            if "error" in msg:
                raise BrowserError(f"{method}: {msg['error']} {msg.get('message', '')}")
            return msg.get("result", {})

    def wait_event(self, method: str, match=lambda params: True, since: int = 0,
                   timeout: float = 30.0) -> dict:
        """The first event `method` from index `since` on whose params satisfy `match`."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for msg in self.events[seen:]:
                if msg.get("method") == method and match(msg.get("params", {})):
                    return msg["params"]
            seen = len(self.events)
            self.events.append(self._receive(deadline, method))

    def _receive(self, deadline: float, waiting_for: str) -> dict:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer to {waiting_for}")
        try:
            return json.loads(self.ws.recv(timeout=left))
        except TimeoutError:
            raise TimeoutError(f"no answer to {waiting_for}") from None

    def close(self) -> None:
        self.ws.close()


class BrowserError(RuntimeError):
    pass


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies excluded)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def _kill_group(pgid: int, timeout: float = 10.0) -> None:
    """Kills the process group the browser leads (its renderers, GPU and network processes,
    zygotes) and waits until none of them runs any more."""
    deadline = time.monotonic() + timeout
    while _live_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise BrowserError(f"processes {_live_members(pgid)} survive SIGKILL")
        time.sleep(0.05)


class Page:
    """What a test does with a browser tab."""

    name = "browser"
    version = ""

    def visit(self, url: str, timeout: float = 30.0) -> Visit:
        """Navigates the tab to `url` and waits until the page has loaded."""
        raise NotImplementedError

    def evaluate(self, expression: str, timeout: float = 30.0):
        """The value of a JavaScript expression in the page (promises awaited), through JSON."""
        raise NotImplementedError

    def wait_for(self, expression: str, timeout: float = 30.0):
        """Polls a JavaScript expression until it is not null/undefined/false; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {value!r} after {timeout}s")
            time.sleep(0.05)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: Path) -> None:
        raise NotImplementedError


class Browser(Page):
    """A headless browser process in its own temporary HOME. Use as a context manager; `close`
    ends the browser and every process it started."""

    def __init__(self, hosts: tuple[str, ...] = HOSTS, extra_args: list[str] | None = None):
        self.hosts = hosts
        self.extra_args = extra_args or []
        self.home = Path(tempfile.mkdtemp(prefix=f"sni-guard-{self.name}-"))
        self.stderr_path = self.home / "stderr.log"
        self.proc: subprocess.Popen | None = None
        self.wire: Wire | None = None
        self.version = ""

    # -- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def _connect(self, ws_url: str) -> None:
        raise NotImplementedError

    def start(self) -> "Browser":
        with open(self.stderr_path, "wb") as err:
            # A session of its own: the browser's helper processes share its process group, which
            # `close` ends as a whole.
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "HOME": str(self.home)}, cwd=self.home,
                start_new_session=True)
        try:
            self._connect(self._wait_for_endpoint())
        except BaseException:
            self.close()
            self.cleanup()
            raise
        return self

    def _wait_for_endpoint(self) -> str:
        """The WebSocket address the browser prints on stderr once it listens."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = re.search(r"listening on (ws://\S+)", self.stderr())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise BrowserError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.stderr()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not open its debugging port in {START_TIMEOUT}s")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _quit(self) -> None:
        """Asks the browser to exit (so that it finishes writing its files)."""

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                if self.wire:
                    self._quit()
                self.proc.wait(timeout=15)
            except Exception:
                pass
        if self.wire:
            try:
                self.wire.close()
            except Exception:
                pass
        if self.proc:
            _kill_group(self.proc.pid)
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
        self.cleanup()


class Chromium(Browser):
    """Chromium over the DevTools protocol. `net_log` is Chromium's own record of every
    connection and request (`--log-net-log`), complete once the browser has closed."""

    name = "chromium"

    def __init__(self, hosts: tuple[str, ...] = HOSTS, extra_args: list[str] | None = None):
        super().__init__(hosts, extra_args)
        self.net_log = self.home / "netlog.json"
        self.session: str | None = None

    def command(self) -> list[str]:
        rules = ", ".join([f"MAP {h} 127.0.0.1" for h in self.hosts] + ["MAP * ~NOTFOUND"])
        return [
            CHROMIUM, "--headless",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium's sandbox refuses root
            f"--user-data-dir={self.home / 'profile'}",
            "--remote-debugging-port=0",
            f"--host-resolver-rules={rules}",
            f"--log-net-log={self.net_log}",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--window-size=800,560",
            *self.extra_args,
            "about:blank",
        ]

    def start(self) -> "Chromium":
        # Chromium on Linux reads user-added roots from $HOME/.pki/nssdb.
        trust_test_ca(self.home / ".pki" / "nssdb")
        return super().start()

    def _connect(self, ws_url: str) -> None:
        self.wire = Wire(ws_url)
        self.version = self.wire.call("Browser.getVersion")["product"]
        pages = [t for t in self.wire.call("Target.getTargets")["targetInfos"]
                 if t["type"] == "page"]
        if not pages:
            raise BrowserError("Chromium has no tab")
        self.session = self.wire.call("Target.attachToTarget", {
            "targetId": pages[0]["targetId"], "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self._page(f"{domain}.enable")

    def _page(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.wire.call(method, params, timeout=timeout, sessionId=self.session)

    def _quit(self) -> None:
        self.wire.call("Browser.close", timeout=10)

    def visit(self, url: str, timeout: float = 30.0) -> Visit:
        since = len(self.wire.events)
        nav = self._page("Page.navigate", {"url": url}, timeout=timeout)
        # Chromium's own error pages (an empty 404 gets one) fire the load event too.
        self.wire.wait_event("Page.loadEventFired", since=since, timeout=timeout)
        status = None
        for msg in self.wire.events[since:]:
            p = msg.get("params", {})
            if (msg.get("method") == "Network.responseReceived"
                    and p.get("type") == "Document" and p["response"]["url"] == url):
                status = p["response"]["status"]
        return Visit(url, status, self.text(), nav.get("errorText", ""))

    def evaluate(self, expression: str, timeout: float = 30.0):
        r = self._page("Runtime.evaluate", {
            "expression": f"(async () => JSON.stringify(await ({expression})))()",
            "awaitPromise": True, "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression}: {r['exceptionDetails']}")
        value = r["result"].get("value")
        return None if value is None else json.loads(value)

    def screenshot(self, path: Path) -> None:
        data = self._page("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))


class Firefox(Browser):
    """Firefox ESR over WebDriver BiDi, which Firefox serves itself on
    `--remote-debugging-port` (no geckodriver)."""

    name = "firefox"

    def __init__(self, hosts: tuple[str, ...] = HOSTS, extra_args: list[str] | None = None):
        super().__init__(hosts, extra_args)
        self.profile = self.home / "profile"
        self.context: str | None = None

    def prefs(self) -> dict:
        hosts = ",".join(self.hosts)
        return {
            # The test names resolve to localhost, only IPv4 (where Envoy listens); every other
            # name to 127.0.0.1 without a DNS query: nothing leaves the loopback.
            "network.dns.localDomains": hosts,
            "network.dns.disableIPv6": True,
            "network.dns.forceResolve": "127.0.0.1",
            "network.trr.mode": 5,  # no DNS over HTTPS
            "network.dns.disablePrefetch": True,
            "network.captive-portal-service.enabled": False,
            "network.connectivity-service.enabled": False,
        }

    def command(self) -> list[str]:
        return [FIREFOX, "--headless", "--no-remote", "--profile", str(self.profile),
                "--remote-debugging-port=0", "--window-size=800,360", *self.extra_args,
                "about:blank"]

    def start(self) -> "Firefox":
        # Firefox keeps its NSS database in the profile.
        trust_test_ca(self.profile)
        (self.profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in self.prefs().items()))
        return super().start()

    def _connect(self, ws_url: str) -> None:
        self.wire = Wire(ws_url + "/session")
        caps = self.wire.call("session.new", {"capabilities": {}})["capabilities"]
        self.version = f"Firefox/{caps['browserVersion']}"
        self.context = self.wire.call("browsingContext.getTree")["contexts"][0]["context"]
        self.wire.call("session.subscribe", {"events": ["network.responseCompleted"]})

    def _quit(self) -> None:
        self.wire.call("browser.close", timeout=10)

    def tab(self) -> "FirefoxTab":
        """A new tab in a user context of its own: its own cookies, caches and connections,
        as in a fresh browser, without the seconds a Firefox start takes."""
        user_context = self.wire.call("browser.createUserContext")["userContext"]
        context = self.wire.call("browsingContext.create", {
            "type": "tab", "userContext": user_context})["context"]
        return FirefoxTab(self, user_context, context)

    def visit(self, url: str, timeout: float = 30.0) -> Visit:
        return self._visit(self.context, url, timeout)

    def evaluate(self, expression: str, timeout: float = 30.0):
        return self._evaluate(self.context, expression, timeout)

    def screenshot(self, path: Path) -> None:
        self._screenshot(self.context, path)

    def _visit(self, context: str, url: str, timeout: float) -> Visit:
        since = len(self.wire.events)
        try:
            self.wire.call("browsingContext.navigate", {
                "context": context, "url": url, "wait": "complete"}, timeout=timeout)
        except BrowserError as e:
            return Visit(url, None, self._text(context), str(e))
        status = None
        for msg in self.wire.events[since:]:
            p = msg.get("params", {})
            if (msg.get("method") == "network.responseCompleted" and p.get("navigation")
                    and p.get("context") == context and p["request"]["url"] == url):
                status = p["response"]["status"]
        return Visit(url, status, self._text(context))

    def _text(self, context: str) -> str:
        return self._evaluate(context, "document.body ? document.body.innerText : ''", 30) or ""

    def _evaluate(self, context: str, expression: str, timeout: float):
        r = self.wire.call("script.evaluate", {
            "expression": f"(async () => JSON.stringify(await ({expression})))()",
            "target": {"context": context}, "awaitPromise": True}, timeout=timeout)
        if r.get("type") == "exception":
            raise BrowserError(f"{expression}: {r['exceptionDetails']}")
        value = r["result"].get("value")
        return None if value is None else json.loads(value)

    def _screenshot(self, context: str, path: Path) -> None:
        data = self.wire.call("browsingContext.captureScreenshot", {"context": context})["data"]
        path.write_bytes(base64.b64decode(data))


class FirefoxTab(Page):
    """A tab of a running Firefox, in its own user context; `close` removes both."""

    name = "firefox"

    def __init__(self, firefox: Firefox, user_context: str, context: str):
        self.firefox, self.user_context, self.context = firefox, user_context, context
        self.version = firefox.version
        self.closed = False

    def visit(self, url: str, timeout: float = 30.0) -> Visit:
        return self.firefox._visit(self.context, url, timeout)

    def evaluate(self, expression: str, timeout: float = 30.0):
        return self.firefox._evaluate(self.context, expression, timeout)

    def screenshot(self, path: Path) -> None:
        self.firefox._screenshot(self.context, path)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.firefox.wire.call("browser.removeUserContext",
                                   {"userContext": self.user_context})

    def __enter__(self) -> "FirefoxTab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


BROWSERS = {"chromium": Chromium, "firefox": Firefox}
