"""Request size limits at the HTTP edge: a body cap per route (refused early, 413) and the WebSocket message cap."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping

import structlog

__all__ = ["DEFAULT_BODY_CAP", "ROUTE_BODY_CAPS", "WS_MAX_MESSAGE_BYTES", "BodyLimit", "server_limits"]

log = structlog.get_logger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Twilio's webhooks are form posts of a few KB; our JSON requests (/v1/calls) are smaller still
DEFAULT_BODY_CAP = 64 * 1024
#: routes that need more: a WebRTC offer carries SDP with every ICE candidate (tens of KB at most)
ROUTE_BODY_CAPS: Mapping[str, int] = {"/webrtc/offer": 256 * 1024}
#: the largest WebSocket message uvicorn assembles (its default is 16 MB). A Twilio media message
#: is ~300 bytes, a start message ~2 KB, a browser PCM frame 640 bytes.
WS_MAX_MESSAGE_BYTES = 64 * 1024


def server_limits() -> dict[str, Any]:
    """uvicorn.Config / uvicorn.run keyword arguments every server start uses."""
    return {"ws_max_size": WS_MAX_MESSAGE_BYTES}


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over the route's cap with 413 before the app reads them.

    A declared Content-Length over the cap is refused before a byte of the body is read; a chunked
    (or lying) body is counted as it streams and refused the moment it passes the cap, so a large
    unsigned POST never sits in memory waiting for its signature check.
    """

    def __init__(self, app: ASGIApp, default_cap: int = DEFAULT_BODY_CAP,
                 route_caps: Mapping[str, int] = ROUTE_BODY_CAPS) -> None:
        self.app, self.default_cap, self.route_caps = app, default_cap, dict(route_caps)

    def cap_for(self, path: str) -> int:
        return self.route_caps.get(path.rstrip("/") or "/", self.default_cap)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await self._refuse(scope, send, cap, f"Content-Length {declared}")
            return
        counted = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal counted
            message = await receive()
            if message["type"] == "http.request":
                counted += len(message.get("body", b""))
                if counted > cap:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, send, cap, f"more than {cap} bytes streamed")

    @staticmethod
    async def _refuse(scope: Scope, send: Send, cap: int, seen: str) -> None:
        path = scope.get("path", "")
        client = scope.get("client") or ("unknown", 0)
        log.warning("http.body_too_large", path=path, remote=f"{client[0]}:{client[1]}", cap=cap, seen=seen)
        detail = (f"request body too large for {path}: {seen}, the limit is {cap} bytes; "
                  "send a smaller body (Twilio webhooks are a few KB)")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
