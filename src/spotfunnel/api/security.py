"""Twilio webhook signatures (X-Twilio-Signature) on the voice webhook and the Media Streams upgrade."""
from __future__ import annotations

import ipaddress
import os
from typing import Any, Mapping

import structlog
from fastapi import HTTPException, Request, WebSocket, WebSocketException, status
from starlette.datastructures import URL, Headers
from twilio.request_validator import RequestValidator

__all__ = ["SIGNATURE_HEADER", "UNVERIFIED_WARNING", "TwilioSignatureVerifier", "is_loopback_host", "public_url"]

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
UNVERIFIED_WARNING = "webhooks are NOT verified; set TWILIO_AUTH_TOKEN"
AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"

_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def _first(value: str | None) -> str | None:
    """The first entry of a proxy header that may list several hops ('https, http')."""
    if not value:
        return None
    return value.split(",")[0].strip() or None


def public_url(url: URL, headers: Headers, websocket: bool = False) -> str:
    """The URL Twilio requested: the forwarded scheme and host (behind a proxy) over the local path."""
    scheme = (_first(headers.get("x-forwarded-proto")) or url.scheme).lower()
    scheme = (_WS_SCHEME if websocket else _HTTP_SCHEME).get(scheme, scheme)
    host = _first(headers.get("x-forwarded-host")) or headers.get("host") or url.netloc
    return str(url.replace(scheme=scheme, netloc=host))


class TwilioSignatureVerifier:
    """Checks X-Twilio-Signature with Twilio's own RequestValidator; off (with a warning) without a token."""

    def __init__(self, auth_token: str | None) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._warned = False

    @classmethod
    def configured(cls, auth_token: str | None = None) -> "TwilioSignatureVerifier":
        """An explicit token wins ('' turns checking off); None reads TWILIO_AUTH_TOKEN."""
        return cls(os.environ.get(AUTH_TOKEN_ENV) if auth_token is None else auth_token)

    @property
    def enabled(self) -> bool:
        return self._validator is not None

    def warn_if_disabled(self) -> None:
        """Log, once, that webhooks are accepted unverified (the embedded, keyless default)."""
        if not self.enabled and not self._warned:
            self._warned = True
            log.warning("twilio.signature.disabled", detail=UNVERIFIED_WARNING)

    def is_valid(self, url: str, params: Mapping[str, Any], signature: str | None) -> bool:
        """True when `signature` signs `url` + `params` (always True when checking is off).

        `params` may be a multi-dict with `getlist` (Starlette's FormData): every value of a
        repeated field is signed.
        """
        if self._validator is None:
            return True
        if not signature:
            return False
        return bool(self._validator.validate(url, params, signature))

    async def require_http(self, request: Request) -> None:
        """FastAPI dependency for form webhooks: 403 unless the signature is right."""
        if self._validator is None:
            return
        form = await request.form()
        url = public_url(request.url, request.headers)
        if not self.is_valid(url, form, request.headers.get(SIGNATURE_HEADER)):
            self._reject(request.url.path, request.client, request.headers, url)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Twilio signature")

    async def require_websocket(self, websocket: WebSocket) -> None:
        """FastAPI dependency for the Media Streams upgrade: Twilio signs the wss URL with no params."""
        if self._validator is None:
            return
        url = public_url(websocket.url, websocket.headers, websocket=True)
        if not self.is_valid(url, {}, websocket.headers.get(SIGNATURE_HEADER)):
            self._reject(websocket.url.path, websocket.client, websocket.headers, url)
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "invalid Twilio signature")

    @staticmethod
    def _reject(path: str, client: object, headers: Headers, url: str) -> None:
        remote = f"{client[0]}:{client[1]}" if isinstance(client, tuple) else "unknown"
        reason = "invalid signature" if headers.get(SIGNATURE_HEADER) else "missing signature"
        log.warning("twilio.signature.rejected", path=path, remote=remote, reason=reason, signed_url=url)


def is_loopback_host(host: str | None) -> bool:
    """Whether `host` (an address, or "localhost") is this machine's loopback."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
