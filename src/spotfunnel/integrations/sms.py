"""SMS senders: the protocol every provider implements, and the embedded sink that records messages."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spotfunnel.store.models import SmsMessage

if TYPE_CHECKING:
    from spotfunnel.store.db import Database


class SmsSender(Protocol):
    async def send(self, *, tenant_id: str, to: str, body: str, idempotency_key: str) -> str:
        """Sends one SMS and returns the provider's message id; the same key never sends twice."""
        ...


class SmsSink:
    """The embedded default: stores each message in `sms_messages` instead of sending it.

    A repeated idempotency key returns the stored message's id; nothing is stored twice."""

    provider = "sink"

    def __init__(self, db: "Database") -> None:
        self.db = db

    async def send(self, *, tenant_id: str, to: str, body: str, idempotency_key: str) -> str:
        if not to or not body:
            raise ValueError("an SMS needs a recipient and a body")
        try:
            return await self.db.run(lambda s: self._store(s, tenant_id, to, body, idempotency_key))
        except IntegrityError:  # a concurrent twin stored it first
            found = await self.db.run(lambda s: _find(s, idempotency_key), write=False)
            if found is None:
                raise
            return found

    def _store(self, session: Session, tenant_id: str, to: str, body: str, key: str) -> str:
        existing = _find(session, key)
        if existing is not None:
            return existing
        message = SmsMessage(tenant_id=tenant_id, to=to, body=body, idempotency_key=key, provider=self.provider)
        session.add(message)
        session.flush()
        return message.id


def _find(session: Session, key: str) -> str | None:
    return session.scalar(select(SmsMessage.id).where(SmsMessage.idempotency_key == key))
