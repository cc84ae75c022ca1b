"""Fake engines for a scripted timeline: blocking jobs the test releases, on production's EngineQueue."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from spotfunnel.resilience.engine_queue import EngineQueue, Urgency
from spotfunnel.voice.speech_io import Transcript


class GatedEngine:
    """A blocking engine: each job notes that it started, then waits until the test opens its gate."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def gate(self, label: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(label, threading.Event())

    def work(self, label: str) -> str:
        self.started.append(label)
        self.gate(label).wait(timeout=10)  # bounded, so a failing test never strands the thread
        return f"done:{label}"

    def release(self, *labels: str) -> None:
        for label in labels:
            self.gate(label).set()

    def release_all(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()


async def until(condition: Callable[[], bool]) -> None:
    """Let the engine thread reach a point of the script (bounded: fails rather than hangs)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the scripted step never happened")


class QueuedStt:
    """A SpeechToText whose decodes run on an EngineQueue, as the local Whisper's do."""

    name = "queued-fake"
    typical_latency_ms = 0

    def __init__(self, queue: EngineQueue, engine: GatedEngine) -> None:
        self.queue, self.engine = queue, engine
        self.requests = 0

    async def transcribe(self, pcm: bytes, *, vocabulary: list[str], speculative: bool = False) -> Transcript:
        self.requests += 1
        urgency = Urgency.SPECULATIVE if speculative else Urgency.FINAL
        text = await self.queue.run(self.engine.work, f"decode-{self.requests}", urgency=urgency)
        return Transcript(text, 0.9, self.name)
