"""A fake browser WebSocket (Starlette's receive/send_bytes/send_text/close) with scripted messages."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Mapping


class FakeBrowserSocket:
    """Inbound messages are queued with `text`, `binary` and `disconnect`; outbound ones are recorded."""

    def __init__(self, fail_sends: bool = False) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent_bytes: list[bytes] = []
        self.sent_json: list[dict[str, Any]] = []
        self.closed = False
        self.close_code: int | None = None
        self.fail_sends = fail_sends

    def text(self, message: object) -> "FakeBrowserSocket":
        raw = message if isinstance(message, str) else json.dumps(message)  # any JSON, valid for us or not
        self.inbox.put_nowait({"type": "websocket.receive", "text": raw})
        return self

    def binary(self, data: bytes) -> "FakeBrowserSocket":
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": data})
        return self

    def disconnect(self) -> "FakeBrowserSocket":
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
        return self

    async def receive(self) -> Mapping[str, Any]:
        return await self.inbox.get()

    async def send_bytes(self, data: bytes) -> None:
        if self.fail_sends:
            raise RuntimeError("socket gone")
        self.sent_bytes.append(data)

    async def send_text(self, data: str) -> None:
        if self.fail_sends:
            raise RuntimeError("socket gone")
        self.sent_json.append(json.loads(data))

    async def close(self, code: int = 1000) -> None:
        self.closed, self.close_code = True, code
