"""Barge-in with the real VAD and models, in process and over Twilio Media Streams (mark/clear on a real socket)."""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import numpy as np
import pytest
from structlog.testing import capture_logs

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.calls.eval import Evaluator
from spotfunnel.calls.eval_cli import loopback_server
from spotfunnel.calls.scenario import load_scenario

from conftest import REPO

pytestmark = pytest.mark.models


def _audible(pcm: bytes) -> np.ndarray:
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, FRAME_BYTES // 2).astype(np.float32)
    return np.sqrt((frames**2).mean(axis=1)) > 150


@contextlib.asynccontextmanager
async def evaluator(services: Any, transport: str) -> AsyncIterator[Evaluator]:
    if transport == "local":
        yield Evaluator(services, transport, fast=True)
        return
    async with loopback_server(services) as (url, directory):
        yield Evaluator(services, transport, fast=True, server_url=url, directory=directory)


@pytest.mark.parametrize("transport", ["local", "twilio"])
async def test_caller_interrupts_and_agent_stops(services, transport: str) -> None:  # type: ignore[no-untyped-def]
    scenario = load_scenario(REPO / "tests/scenarios/barge/interrupt-the-hours.yaml")
    with capture_logs() as logs:
        async with evaluator(services, transport) as ev:
            result = await ev.run(scenario)
    assert result.passed, result.failures
    interrupted = [t for t in result.transcript if t["role"] == "agent" and t["interrupted"]]
    assert len(interrupted) == 1
    hours_reply = interrupted[0]["text"]
    assert 0 < len(hours_reply.split()) < 25  # only the words that played before the caller cut in
    trace = result.trace
    assert trace is not None
    caller, agent = _audible(bytes(trace.caller_pcm)), _audible(bytes(trace.agent_pcm))
    overlap_start = next(i for i in range(len(caller)) if caller[i] and agent[i])
    stopped = next(i for i in range(overlap_start, len(agent)) if not agent[i:i + 10].any())
    # in audio time (20 ms frames), not wall time: what the caller heard after talking over the agent;
    # over Twilio the round trip through mu-law and four resamplers adds up to two frames
    budget_ms = 200 + (40 if transport == "twilio" else 0)
    assert (stopped - overlap_start) * 20 <= budget_ms, f"agent kept talking {(stopped - overlap_start) * 20} ms"
    if transport == "twilio":
        # the server sent `clear` over the socket (the peer empties its playback as Twilio does), and the
        # history above holds only the words whose marks came back before it, marked interrupted
        [ended] = [e for e in logs if e["event"] == "twilio.stream.ended"]
        assert ended["clears_out"] >= 1 and ended["outcome"] == result.record.outcome  # type: ignore[union-attr]
