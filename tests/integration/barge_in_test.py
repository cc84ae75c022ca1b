"""Barge-in with the real VAD and models: the agent stops within 200 ms and keeps only what was heard."""
from __future__ import annotations

import numpy as np
import pytest

from spotfunnel.audio.frames import FRAME_BYTES
from spotfunnel.calls.eval import Evaluator
from spotfunnel.calls.scenario import load_scenario

from conftest import REPO

pytestmark = pytest.mark.models


def _audible(pcm: bytes) -> np.ndarray:
    frames = np.frombuffer(pcm, dtype=np.int16).reshape(-1, FRAME_BYTES // 2).astype(np.float32)
    return np.sqrt((frames**2).mean(axis=1)) > 150


@pytest.mark.parametrize("transport", ["local"])
async def test_caller_interrupts_and_agent_stops(services, transport: str) -> None:  # type: ignore[no-untyped-def]
    scenario = load_scenario(REPO / "tests/scenarios/barge/interrupt-the-hours.yaml")
    result = await Evaluator(services, transport, fast=True).run(scenario)
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
    assert (stopped - overlap_start) * 20 <= 200, f"agent kept talking {(stopped - overlap_start) * 20} ms"
