"""Serve an ASGI app with uvicorn on a random loopback port inside the running event loop (eval, tests, benchmarks)."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Literal

from spotfunnel.api.limits import server_limits

__all__ = ["serve_on_loopback"]


@contextlib.asynccontextmanager
async def serve_on_loopback(app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", stop_timeout_s: float = 30.0) -> AsyncIterator[int]:
    """Run `app` on 127.0.0.1 with the limits `spotfunnel serve` uses; yields the port, stops the server on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan,
                                           **server_limits()))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout_s)
