"""Headless Debian Chromium for tests: launched with a fake microphone file, driven over the DevTools protocol."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import websockets


def chromium_flags(user_data_dir: Path, caller_wav: Path, deny_microphone: bool = False) -> list[str]:
    return [
        "--headless=new", "--no-sandbox", "--disable-gpu",
        "--use-fake-ui-for-media-stream" + ("=deny" if deny_microphone else ""),
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={caller_wav}%noloop",
        "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={user_data_dir}",
    ]


class Page:
    """One page target over the DevTools protocol: evaluate JavaScript, read the console."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self._waiting:
                self._waiting.pop(msg["id"]).set_result(msg)
            elif msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append(f"exception: {msg['params']['exceptionDetails'].get('text')}")

    async def send(self, method: str, timeout: float = 10, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        await self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def eval(self, expression: str, timeout: float = 10) -> Any:
        result = await self.send("Runtime.evaluate", timeout=timeout, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, poll: float = 0.25) -> Any:
        """Poll a JavaScript expression until it is truthy; its value, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression!r} within {timeout:.0f} s; "
                                   f"console: {self.console[-10:]}")
            await asyncio.sleep(poll)

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()


@contextlib.asynccontextmanager
async def chromium_page(binary: str, url: str, caller_wav: Path, user_data_dir: Path,
                        start_timeout: float = 30, deny_microphone: bool = False) -> AsyncIterator[Page]:
    """Chromium showing `url`, its microphone playing `caller_wav` once; always killed on exit."""
    log = open(user_data_dir.parent / "chromium.log", "wb")
    proc = subprocess.Popen([binary, *chromium_flags(user_data_dir, caller_wav, deny_microphone), url],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    page = None
    try:
        port = await _devtools_port(user_data_dir, proc, start_timeout)
        ws_url = await _page_ws_url(port, url, start_timeout)
        ws = await websockets.connect(ws_url, max_size=None, open_timeout=start_timeout)
        page = Page(ws)
        await page.send("Runtime.enable")
        yield page
    finally:
        if page is not None:
            with contextlib.suppress(Exception):
                await page.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # chromium and its helper processes, ours only
        proc.wait(timeout=10)
        log.close()


async def _devtools_port(user_data_dir: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    marker = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not marker.exists() or not marker.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before DevTools came up; "
                               f"see {user_data_dir.parent / 'chromium.log'}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"chromium did not write {marker} within {timeout:.0f} s")
        await asyncio.sleep(0.1)
    return int(marker.read_text().split()[0])


async def _page_ws_url(port: int, url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            targets = (await client.get(f"http://127.0.0.1:{port}/json/list", timeout=5)).json()
            for t in targets:
                if t.get("type") == "page" and t.get("url", "").startswith(url.split("?")[0]):
                    return str(t["webSocketDebuggerUrl"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"no page for {url} among {targets}")
            await asyncio.sleep(0.1)
