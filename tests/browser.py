"""Headless Chromium (Debian's `chromium` package, installed by `make test`) driven over the DevTools protocol
with aiohttp's websocket client: open a page, wait until it has rendered, run JavaScript in it, and collect
its console errors, uncaught exceptions and every URL it requested, and a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.ray_nodes import free_port


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("Chromium is not installed (Debian: apt-get install chromium; `make test` installs it)")
    return found


@dataclass
class Page:
    """What a page did while it was open."""

    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    requests: list[str] = field(default_factory=list)  # every URL it asked for
    values: list = field(default_factory=list)  # the results of the expressions, in order
    screenshot: bytes = b""


async def _drive(ws_url: str, url: str, ready: str, expressions: list[str], page: Page) -> None:
    counter = itertools.count(1)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        async def call(method: str, **params) -> dict:
            ident = next(counter)
            await ws.send_json({"id": ident, "method": method, "params": params})
            while True:
                message = json.loads((await ws.receive(timeout=60)).data)
                if message.get("id") == ident:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message["result"]
                _record(message, page)

        async def evaluate(expression: str):
            result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in result:
                raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
            return result["result"].get("value")

        for domain in ("Page", "Runtime", "Log", "Network"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=1200, height=900, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        deadline = time.time() + 60
        while not await evaluate(f"document.readyState === 'complete' && Boolean({ready})"):
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not render within 60 s ({ready})")
            await asyncio.sleep(0.2)
        for expression in expressions:
            page.values.append(await evaluate(expression))
        page.screenshot = base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])


def _record(message: dict, page: Page) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.exceptionThrown":
        page.errors.append(json.dumps(params["exceptionDetails"])[:500])
    elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
        page.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        page.errors.append(params["entry"]["text"])
    elif method == "Network.requestWillBeSent":
        page.requests.append(params["request"]["url"])
    elif method == "Network.loadingFailed":
        page.errors.append(f"loading failed: {params.get('errorText')}")


def open_page(url: str, ready: str, expressions: list[str] = ()) -> Page:
    """Open `url` in a fresh headless Chromium, wait until the JavaScript `ready` is true, evaluate each
    expression (promises awaited), take a screenshot; the browser is closed after."""
    port, profile = free_port(), tempfile.mkdtemp(prefix="vlpet-chromium-")
    proc = subprocess.Popen([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
                             f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, targets = time.time() + 60, None
        while targets is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                    targets = [t for t in json.load(answer) if t["type"] == "page"] or None
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"Chromium did not start (exit status {proc.poll()})") from None
                time.sleep(0.3)
        page = Page()
        asyncio.run(_drive(targets[0]["webSocketDebuggerUrl"], url, ready, list(expressions), page))
        return page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
