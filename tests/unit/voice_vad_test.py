"""The VAD never runs its model on the event loop, and moving it off changes no decision."""
from __future__ import annotations

import threading
from typing import Any

from spotfunnel.voice.vad import EnergyFrameVad, SileroFrameVad

from voice_fakes import ScriptedStt, feed, silence_frames, start_session, tone_frames


class ThreadRecordingModel:
    """Wraps Silero's native model and notes which thread ran each inference."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.threads: list[int] = []

    def process(self, window: memoryview) -> float:
        self.threads.append(threading.get_ident())
        return float(self._model.process(window))

    def reset(self) -> None:
        self._model.reset()


class OffLoopEnergyVad(EnergyFrameVad):
    """The level VAD, routed the way a model VAD is (off the loop), to compare decisions."""

    runs_off_loop = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def probability(self, frame: bytes) -> float:
        self.threads.append(threading.get_ident())
        return super().probability(frame)


async def test_silero_inference_never_runs_on_the_event_loop_thread() -> None:
    vad = SileroFrameVad()
    model = ThreadRecordingModel(vad._model)
    vad._model = model
    session, line, task = await start_session(ScriptedStt(["hello"]), vad)
    await feed(line, tone_frames(400) + silence_frames(400))
    await line.hangup()
    await task
    loop_thread = threading.get_ident()
    assert len(model.threads) >= 20  # 800 ms of frames, one 32 ms window every 1.6 frames
    assert loop_thread not in model.threads


def _decisions(events: list[Any]) -> list[tuple[str, int]]:
    wanted = {"caller_speech_started", "speculation_started", "speculation_dropped", "early_end_of_turn",
              "caller_turn", "noise_ignored"}
    return [(e.kind, e.frame) for e in events if e.kind in wanted]


async def test_off_loop_vad_makes_the_same_decisions_on_the_same_frames() -> None:
    # speech, a pause long enough to speculate, more speech (drop it), an early end, a click (noise)
    frames = (tone_frames(400) + silence_frames(300) + tone_frames(300) + silence_frames(700)
              + tone_frames(60) + silence_frames(700))
    runs = []
    for vad in (EnergyFrameVad(), OffLoopEnergyVad()):
        session, line, task = await start_session(ScriptedStt(["uh", "two pm", "x"]), vad,
                                                  completes_answer=lambda text: text == "two pm")
        await feed(line, frames)
        await line.hangup()
        await task
        runs.append((_decisions(session.events.events), [t.text for t in session.received]))
    inline, off_loop = runs
    assert off_loop == inline
    kinds = [kind for kind, _frame in inline[0]]
    assert kinds == ["caller_speech_started", "speculation_started", "speculation_dropped", "speculation_started",
                     "early_end_of_turn", "caller_turn", "caller_speech_started", "noise_ignored"]
    assert inline[1] == ["two pm"]
