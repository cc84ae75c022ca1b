"""The client of POST /v1/calls behind `spotfunnel dial`: ask a running server to place an outbound call."""
from __future__ import annotations

import os

import httpx
from rich.console import Console

from spotfunnel.api.twilio_routes import API_TOKEN_ENV
from spotfunnel.transports.twilio_control import validate_e164

__all__ = ["dial"]


def dial(server: str, tenant: str, to: str, console: Console, client: httpx.Client | None = None) -> int:
    """Place the call; print its CallSid, or a clear error. Returns the exit code (0 ok, 1 refused, 2 bad input)."""
    try:
        number = validate_e164(to, "number to call (--to)")
    except ValueError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        return 2
    headers = {"Authorization": f"Bearer {os.environ[API_TOKEN_ENV]}"} if os.environ.get(API_TOKEN_ENV) else {}
    url = f"{server.rstrip('/')}/v1/calls"
    http = client or httpx.Client(timeout=30.0)
    try:
        response = http.post(url, json={"tenant": tenant, "to": number}, headers=headers)
    except httpx.HTTPError as exc:
        console.print(f"[red]no SpotFunnel server answered at {server} ({type(exc).__name__}); "
                      "start one with `spotfunnel serve` or pass --server URL[/]", highlight=False)
        return 1
    finally:
        if client is None:
            http.close()
    if response.status_code != 201:
        console.print(f"[red]the call was not placed (HTTP {response.status_code}): {_detail(response)}[/]",
                      highlight=False)
        return 1
    call = response.json()
    console.print(f"Calling {call['to']} from {call['from']} for {call['tenant']}: Twilio call {call['call_sid']} "
                  f"({call['status']}). The agent answers when the call is picked up.", highlight=False)
    return 0


def _detail(response: httpx.Response) -> str:
    """FastAPI's error detail: a string from our routes, a list of field errors from validation."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:200]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in detail)
    return str(detail)
