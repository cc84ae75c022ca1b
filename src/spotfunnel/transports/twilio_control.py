"""Call control over Twilio's REST API (the real `twilio` client): transfer, hang up, outbound calls with AMD."""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import phonenumbers
import requests
import structlog
from prometheus_client import Counter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from spotfunnel.resilience.breaker import CircuitBreaker, CircuitOpen
from spotfunnel.resilience.retry import retry_async

__all__ = [
    "ACCOUNT_SID_ENV", "API_URL_ENV", "AUTH_TOKEN_ENV", "MISSING_CREDENTIALS", "STATUS_CALLBACK_EVENTS",
    "CallControl", "CallInfo", "ControlRequest", "ControlRequests", "OutboundCall", "TwilioCallControl", "TwilioControlError", "transfer_twiml",
    "validate_e164",
]

log = structlog.get_logger(__name__)
# The client logs every request and response at INFO; the outcome lines below say what matters.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

ACCOUNT_SID_ENV = "TWILIO_ACCOUNT_SID"
AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
#: send REST requests to this base URL instead of https://api.twilio.com (a Twilio API mock)
API_URL_ENV = "SPOTFUNNEL_TWILIO_API_URL"
MISSING_CREDENTIALS = (f"Twilio call control is not configured: set {ACCOUNT_SID_ENV} and {AUTH_TOKEN_ENV} "
                       "(Twilio Console > Account info) in the server's environment")
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")

CONTROL_REQUESTS = Counter("spotfunnel_twilio_control_requests_total",
                           "Call-control requests to Twilio's REST API, by action and result", ["action", "result"])

R = TypeVar("R")

# Twilio error codes (https://www.twilio.com/docs/api/errors) a user can act on, and what to do.
#: The blocking client's requests run here, not in the loop's default pool, which model work and
#: file I/O share: a slow Twilio cannot starve them, nor they delay a hang-up.
_REST_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="twilio-rest")

#: Errors that mean a hang-up has nothing left to do: the call already ended (21220) or is gone (20404).
_ALREADY_ENDED = frozenset({21220, 20404})

_EXPLAINED = {
    20003: "Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20404: "Twilio does not know this call (it may have ended already, or belongs to another account)",
    20429: "Twilio is rate-limiting this account; retry later",
    21210: "the From number is not a verified caller ID of this account: check the tenant's profile.phone",
    21211: "Twilio says the number to call is not a valid phone number",
    21212: "the From number is not valid: check the tenant's profile.phone (E.164, a Twilio number)",
    21215: "calls to this destination are blocked: enable it in Twilio's voice geographic permissions",
    21219: "a trial account can only call verified numbers: verify the number or upgrade the account",
    21220: "the call is no longer in progress, so it cannot be redirected or ended",
}


class TwilioControlError(RuntimeError):
    """A call-control request to Twilio failed; the message says what happened and what to do."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class CallInfo:
    """The parts of Twilio's call resource we use."""

    sid: str
    status: str
    direction: str = ""
    to: str = ""
    from_: str = ""


@dataclass(frozen=True)
class OutboundCall:
    """An outbound call to place: who, from which number, and where Twilio reports back."""

    to: str
    from_: str
    url: str  # our voice webhook (answers with <Connect><Stream>)
    status_callback: str
    amd_callback: str


class CallControl(Protocol):
    """What a transport needs to end or hand off its live call."""

    async def transfer(self, call_sid: str, to: str, say: str | None = None) -> CallInfo: ...

    async def hangup(self, call_sid: str) -> CallInfo: ...


@dataclass(frozen=True)
class ControlRequest:
    """A call-control action the agent asked for, and what became of it at Twilio."""

    action: str  # "hangup" | "transfer"
    to: str | None = None
    #: "done", "failed: <why>" or "not carried out: <why>"; set once the request has been handled
    outcome: str = field(default="", compare=False)


class ControlRequests:
    """One call's control requests: recorded, carried out through `control` when there is one, outcome kept.

    Each request runs as its own task: if the task that asked is cancelled (the call is ending), the
    request still completes and its outcome is recorded, so a call never stays up at Twilio because
    our side stopped waiting. Without control (no credentials) a request is logged as not carried out.
    """

    def __init__(self, control: CallControl | None) -> None:
        self.control = control
        self.entries: list[ControlRequest] = []
        self._running: set[asyncio.Task[bool]] = set()

    def start(self, action: str, call_sid: str | None, to: str | None = None) -> asyncio.Task[bool] | None:
        """Record the request and start it; the task's result says whether Twilio did it. None: not carried out."""
        self.entries.append(ControlRequest(action, to))
        index = len(self.entries) - 1
        control = self.control
        if control is None or not call_sid:
            why = MISSING_CREDENTIALS if control is None else "the stream has no call SID"
            log.warning("twilio.control.not_carried_out", action=action, to=to, call_sid=call_sid, reason=why)
            self.entries[index] = replace(self.entries[index], outcome=f"not carried out: {why}")
            return None
        request: Callable[[], Awaitable[CallInfo]]
        if action == "transfer":
            request = functools.partial(control.transfer, call_sid, to or "")
        else:
            request = functools.partial(control.hangup, call_sid)
        task = asyncio.create_task(self._carry_out(index, call_sid, request))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _carry_out(self, index: int, call_sid: str, request: Callable[[], Awaitable[CallInfo]]) -> bool:
        entry = self.entries[index]
        try:
            await request()
        except Exception as exc:  # TwilioControlError (explained) or a bug: the call must still end cleanly
            log.error("twilio.control.failed", action=entry.action, to=entry.to, call_sid=call_sid, error=str(exc))
            self.entries[index] = replace(entry, outcome=f"failed: {exc}")
            return False
        log.info("twilio.control.done", action=entry.action, to=entry.to, call_sid=call_sid)
        self.entries[index] = replace(entry, outcome="done")
        return True


def validate_e164(number: str, what: str = "number") -> str:
    """`number` in E.164 (+ country code, digits only) if it is a valid phone number, else ValueError."""
    cleaned = "".join(c for c in number.strip() if c not in " -().")
    hint = f"give the {what} in E.164 form: + country code and number, e.g. +14155550123"
    if not cleaned.startswith("+"):
        raise ValueError(f"{number!r} is not in E.164 form (it must start with +); {hint}")
    try:
        parsed = phonenumbers.parse(cleaned, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{number!r} is not a phone number ({exc}); {hint}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{number!r} is not a valid phone number; {hint}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def transfer_twiml(to: str, say: str | None = None) -> str:
    """The TwiML that hands the live call to `to`: an optional <Say>, then <Dial>."""
    response = VoiceResponse()
    if say:
        response.say(say)
    response.dial(to)
    return str(response)


def explain(exc: BaseException, action: str) -> str:
    """A readable message for a failed REST request: what Twilio said, what it means, where to read more."""
    if isinstance(exc, TwilioRestException):
        code = exc.code
        meaning = _EXPLAINED.get(code or 0)
        if meaning is None:
            meaning = ("Twilio is rate-limiting requests" if exc.status == 429 else
                       "Twilio had a server error" if exc.status >= 500 else "Twilio rejected the request")
        more = f"; see https://www.twilio.com/docs/errors/{code}" if code else ""
        return f"Twilio {action} failed: {meaning} (HTTP {exc.status}, error {code}: {exc.msg}{more})"
    if isinstance(exc, requests.RequestException):
        return f"Twilio {action} failed: could not reach Twilio's REST API ({type(exc).__name__}: {exc})"
    return f"Twilio {action} failed: {type(exc).__name__}: {exc}"


class _Transient(Exception):
    """A failure worth retrying; wraps the client's exception."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _is_transient(exc: Exception, idempotent: bool) -> bool:
    """Retry policy. Updates (redirect, complete) are idempotent: retry 429, 5xx and network errors.

    Creating a call is not: after a 500 or a broken connection the call may exist, and a retry
    could ring the person twice. It is retried only when Twilio surely did nothing (429, 503, or
    the connection was never made).
    """
    if isinstance(exc, TwilioRestException):
        return exc.status == 429 or (exc.status >= 500 and (idempotent or exc.status == 503))
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return idempotent and isinstance(exc, (requests.ConnectionError, requests.Timeout))


class _RebasedHttpClient(TwilioHttpClient):
    """Sends the client's requests to another base URL (a Twilio API mock) with the same paths."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        rebased = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, rebased, *args, **kwargs)


def _info(call: Any) -> CallInfo:
    return CallInfo(sid=str(call.sid), status=str(call.status or ""), direction=str(call.direction or ""),
                    to=str(call.to or ""), from_=str(call._from or ""))


class TwilioCallControl:
    """Twilio's REST API for live calls, behind a retry with backoff and a circuit breaker.

    The blocking `twilio` client runs in a worker thread. Every failure ends as a TwilioControlError
    whose message explains it; 4xx answers do not count against the breaker (Twilio is up).
    """

    def __init__(self, account_sid: str, auth_token: str, *, api_url: str | None = None,
                 timeout_s: float = 10.0, attempts: int = 3, base_delay_s: float = 0.25, max_delay_s: float = 4.0,
                 breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        if not account_sid or not auth_token:
            raise ValueError(MISSING_CREDENTIALS)
        http = _RebasedHttpClient(api_url, timeout_s) if api_url else TwilioHttpClient(timeout=timeout_s)
        self.client = Client(account_sid, auth_token, http_client=http)
        self.account_sid = account_sid
        self.breaker = breaker or CircuitBreaker("twilio-rest", failure_threshold=3, reset_timeout_s=30.0)
        self.attempts, self.base_delay_s, self.max_delay_s = attempts, base_delay_s, max_delay_s
        self._sleep = sleep

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> TwilioCallControl | None:
        """Control from TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (None when either is missing)."""
        env = os.environ if env is None else env
        sid, token = env.get(ACCOUNT_SID_ENV, ""), env.get(AUTH_TOKEN_ENV, "")
        if not sid or not token:
            return None
        return cls(sid, token, api_url=env.get(API_URL_ENV) or None, **kwargs)

    async def transfer(self, call_sid: str, to: str, say: str | None = None) -> CallInfo:
        """Redirect the live call to new TwiML that dials `to` (this ends its media stream)."""
        twiml = transfer_twiml(validate_e164(to, "hand-off number"), say)
        return await self._run("transfer", lambda: self.client.calls(call_sid).update(twiml=twiml), idempotent=True)

    async def hangup(self, call_sid: str) -> CallInfo:
        """End the live call; a call that has already ended counts as hung up."""
        try:
            return await self._run("hangup", lambda: self.client.calls(call_sid).update(status="completed"),
                                   idempotent=True)
        except TwilioControlError as exc:
            if exc.code not in _ALREADY_ENDED:
                raise
            log.info("twilio.hangup.already_ended", call_sid=call_sid, code=exc.code)
            return CallInfo(sid=call_sid, status="completed")

    async def place_call(self, call: OutboundCall) -> CallInfo:
        """Start an outbound call; answering-machine detection runs asynchronously and reports to amd_callback."""
        def create() -> Any:
            return self.client.calls.create(
                to=call.to, from_=call.from_, url=call.url, method="POST",
                status_callback=call.status_callback, status_callback_method="POST",
                status_callback_event=list(STATUS_CALLBACK_EVENTS),
                machine_detection="DetectMessageEnd", async_amd="true",
                async_amd_status_callback=call.amd_callback, async_amd_status_callback_method="POST")

        return await self._run("outbound call", create, idempotent=False)

    async def _run(self, action: str, request: Callable[[], Any], *, idempotent: bool) -> CallInfo:
        if not self.breaker.allow():
            CONTROL_REQUESTS.labels(action, "breaker_open").inc()
            why = CircuitOpen(self.breaker.name, self.breaker.retry_in_s())
            raise TwilioControlError(f"Twilio {action} not attempted: {why}")
        try:
            result = await retry_async(lambda: self._attempt(request, idempotent), attempts=self.attempts,
                                       base_delay_s=self.base_delay_s, max_delay_s=self.max_delay_s,
                                       retry_on=(_Transient,), sleep=self._sleep,
                                       on_retry=lambda n, exc, delay: log.warning(
                                           "twilio.rest.retry", action=action, attempt=n, delay_s=round(delay, 3),
                                           error=explain(exc.cause if isinstance(exc, _Transient) else exc, action)))
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except Exception as exc:
            cause = exc.cause if isinstance(exc, _Transient) else exc
            client_error = isinstance(cause, TwilioRestException) and cause.status < 500 and cause.status != 429
            if client_error:  # Twilio answered: the service is up, the request was wrong
                self.breaker.record_success()
            else:
                self.breaker.record_failure()
            CONTROL_REQUESTS.labels(action, "failed").inc()
            message = explain(cause, action)
            log.error("twilio.rest.failed", action=action, error=message)
            status = cause.status if isinstance(cause, TwilioRestException) else None
            code = cause.code if isinstance(cause, TwilioRestException) else None
            raise TwilioControlError(message, status=status, code=code) from cause
        self.breaker.record_success()
        CONTROL_REQUESTS.labels(action, "ok").inc()
        info = _info(result)
        log.info("twilio.rest.ok", action=action, call_sid=info.sid, status=info.status)
        return info

    @staticmethod
    async def _attempt(request: Callable[[], R], idempotent: bool) -> R:
        try:
            return await asyncio.get_running_loop().run_in_executor(_REST_POOL, request)
        except (TwilioException, requests.RequestException) as exc:
            if _is_transient(exc, idempotent):
                raise _Transient(exc) from exc
            raise
