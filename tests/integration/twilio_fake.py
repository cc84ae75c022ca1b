"""A local stand-in for Twilio's REST API (Calls resource) that checks requests the way Twilio documents them.

Runs in a thread (its own event loop), so the blocking `twilio` client in a worker thread and
Starlette's TestClient can both reach it. Requests are recorded; failures can be scripted.
"""
from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "fake-twilio-auth-token"
API = "/2010-04-01/Accounts/{account}"
AMD_MODES = {"Enable", "DetectMessageEnd"}
CALLBACK_EVENTS = {"initiated", "ringing", "answered", "completed"}


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, list[str]]
    content_type: str

    def one(self, name: str) -> str:
        [value] = self.form[name]
        return value


@dataclass
class FakeTwilio:
    """Twilio's Calls endpoints: create (POST Calls.json) and update (POST Calls/{Sid}.json)."""

    requests: list[Recorded] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)  # CallSids Twilio no longer knows (-> 404, code 20404)
    failures: deque[tuple[int, int, str]] = field(default_factory=deque)  # (HTTP status, Twilio code, message)
    url: str = ""

    def fail_next(self, *errors: tuple[int, int, str]) -> None:
        self.failures.extend(errors)

    def updates(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA")]

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post(API + "/Calls.json")
        async def create(account: str, request: Request) -> JSONResponse:
            form, problem = await self._admit(account, request)
            if problem is not None:
                return problem
            missing = [name for name in ("To", "From") if not form.get(name)]
            if missing or not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
                return _error(400, 21205, f"Missing required parameter(s): {missing or ['Url']}", request)
            if not form["To"][0].startswith("+"):
                return _error(400, 21211, f"The 'To' number {form['To'][0]} is not a valid phone number.", request)
            if form.get("MachineDetection", ["Enable"])[0] not in AMD_MODES:
                return _error(400, 21626, "MachineDetection must be Enable or DetectMessageEnd", request)
            if not set(form.get("StatusCallbackEvent", [])) <= CALLBACK_EVENTS:
                return _error(400, 21627, "StatusCallbackEvent has an unknown event", request)
            sid = "CA" + uuid.uuid4().hex
            return JSONResponse(_call(sid, form["To"][0], form["From"][0], "queued", "outbound-api"), 201)

        @app.post(API + "/Calls/{sid}.json")
        async def update(account: str, sid: str, request: Request) -> JSONResponse:
            form, problem = await self._admit(account, request)
            if problem is not None:
                return problem
            if sid in self.ended:
                return _error(404, 20404, f"The requested resource {request.url.path} was not found", request)
            given = [name for name in ("Url", "Twiml", "Status") if name in form]
            if len(given) != 1:
                return _error(400, 21218, f"give exactly one of Url, Twiml, Status; got {given}", request)
            status = form.get("Status", ["in-progress"])[0]
            if status not in ("in-progress", "completed", "canceled"):
                return _error(400, 21218, f"Status must be completed or canceled, got {status}", request)
            if status == "completed":
                self.ended.add(sid)
            return JSONResponse(_call(sid, "+14155550100", "+14155550166", status, "inbound"), 200)

        return app

    async def _admit(self, account: str, request: Request) -> tuple[dict[str, list[str]], JSONResponse | None]:
        """Record the request; check auth, account and encoding; play a scripted failure if one is queued."""
        raw = await request.form()
        form = {key: [str(v) for v in raw.getlist(key)] for key in raw.keys()}
        content_type = request.headers.get("content-type", "")
        self.requests.append(Recorded(request.method, request.url.path, form, content_type))
        if _basic_auth(request) != (ACCOUNT_SID, AUTH_TOKEN) or account != ACCOUNT_SID:
            return form, _error(401, 20003, "Authenticate", request)
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return form, _error(400, 20001, f"expected a form body, got {content_type!r}", request)
        if self.failures:
            status, code, message = self.failures.popleft()
            return form, _error(status, code, message, request)
        return form, None


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


def _error(status: int, code: int, message: str, request: Request) -> JSONResponse:
    """Twilio's documented error body."""
    return JSONResponse({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                         "status": status}, status)


def _call(sid: str, to: str, from_: str, status: str, direction: str) -> dict[str, Any]:
    """Twilio's call resource JSON (api.twilio.com/2010-04-01 Calls), as documented."""
    base = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}"
    return {
        "account_sid": ACCOUNT_SID, "annotation": None, "answered_by": None, "api_version": "2010-04-01",
        "caller_name": None, "date_created": "Sun, 22 Nov 2026 05:00:00 +0000",
        "date_updated": "Sun, 22 Nov 2026 05:00:00 +0000", "direction": direction, "duration": None,
        "end_time": None, "forwarded_from": None, "from": from_, "from_formatted": from_, "group_sid": None,
        "parent_call_sid": None, "phone_number_sid": "PN" + "b" * 32, "price": None, "price_unit": "USD",
        "sid": sid, "start_time": None, "status": status,
        "subresource_uris": {name: f"{base}/{name.title()}.json" for name in
                             ("notifications", "recordings", "payments", "events", "siprec", "streams")},
        "to": to, "to_formatted": to, "trunk_sid": None, "uri": f"{base}.json", "queue_time": "0",
    }


class RunningFake:
    """The fake on 127.0.0.1 (random port) in a background thread: `with RunningFake() as fake:`."""

    def __init__(self) -> None:
        self.fake = FakeTwilio()
        self.server = uvicorn.Server(uvicorn.Config(self.fake.app(), host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="fake-twilio", daemon=True)

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake Twilio server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.fake.url = f"http://127.0.0.1:{port}"
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
