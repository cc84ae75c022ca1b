"""The real server app on a loopback port for the Twilio edge tests, started with the limits `spotfunnel serve` uses."""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Literal

from spotfunnel.api.app import create_app
from spotfunnel.api.loopback import serve_on_loopback
from spotfunnel.store.db import Database


@contextlib.asynccontextmanager
async def running_app(app: Any, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1; yields http://host:port. lifespan "off": models not loaded (edge-only tests)."""
    async with serve_on_loopback(app, lifespan=lifespan) as port:
        yield f"http://127.0.0.1:{port}"


def edge_app(token: str | None = "", **kwargs: Any) -> Any:
    """The real app over an in-memory database, no outbox worker; Twilio signatures checked with `token`."""
    return create_app(Database("sqlite://"), run_worker=False, twilio_auth_token=token, twilio_control=None, **kwargs)
