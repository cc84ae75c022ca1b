"""The transport seam: what the voice session reads from and writes to, whatever the protocol."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Union


@dataclass(frozen=True)
class CallStarted:
    """The call is up; tenant and caller are known."""

    call_id: str
    caller_id: str
    called: str
    tenant_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioIn:
    """One 20 ms frame of caller audio, PCM16 16 kHz mono (640 bytes)."""

    pcm: bytes


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class MarkPlayed:
    """The far end reports that the agent audio up to this mark has been played."""

    name: str


@dataclass(frozen=True)
class AnsweredBy:
    """Who picked up an outbound call, as the provider's answering-machine detection decided."""

    kind: str  # "human" | "machine" | "fax" | "unknown"
    detail: str = ""  # the provider's own label, e.g. Twilio's "machine_end_beep"


@dataclass(frozen=True)
class Hangup:
    reason: str = "caller hung up"


@dataclass(frozen=True)
class ProtocolIssue:
    """Something malformed or out of order arrived; the call goes on, the issue is logged."""

    message: str


InboundEvent = Union[CallStarted, AudioIn, Dtmf, MarkPlayed, AnsweredBy, Hangup, ProtocolIssue]


class Transport(Protocol):
    """One call's media and control channel.

    `receive` returns inbound items in order and `Hangup` once at the end. Outbound audio is sent
    one 20 ms frame at a time, paced by the voice session's playout clock. A transport whose far end
    echoes marks (MarkPlayed once the audio before the mark has played) sets a class attribute
    `echoes_marks = True`; the session then counts speech as heard only when confirmed by echoes.
    """

    #: fast mode: the far end waits for the agent before sending more audio, so audio time stops
    #: while the agent is thinking. False on real lines.
    lockstep: bool

    async def receive(self) -> InboundEvent: ...

    async def send_audio(self, pcm: bytes) -> None: ...

    async def send_mark(self, name: str) -> None: ...

    async def clear(self) -> None:
        """Drop agent audio queued at the far end (barge-in)."""
        ...

    async def hangup(self) -> None: ...

    async def transfer(self, to: str) -> bool:
        """Hand the call to a human at `to` (E.164).

        True when the call has left the agent (handed over, or ended trying); False when the
        transfer could not be carried out and the caller is still on the line with the agent.
        """
        ...
