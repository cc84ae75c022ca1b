"""Transport overhead benchmark: codec cost per 20 ms frame, and the latency each transport adds at the edge.

Two measurements per transport, both printed as P50/P95:

* codec path, µs per 20 ms frame: the work done in process to turn one wire frame into the voice
  core's PCM16 16 kHz frame (inbound) and back (outbound): JSON + base64 + mu-law + resampling for
  Twilio, RTP + G.711 + resampling for SIP, Opus decode/encode + 48 kHz resampling for WebRTC,
  frame checks for the browser's PCM WebSocket;
* edge hop, ms: over a real loopback socket, from the far end sending a frame to the voice side
  receiving it (inbound), and from the voice side sending a frame to the far end receiving it
  (outbound). An echo agent answers each inbound frame with one outbound frame, as the playout
  clock does, at the real 20 ms pace. The target is under 1 ms added per hop. WebRTC has no hop
  row: its delay is set by the receiving side's jitter buffer (aiortc's and the browser's), not by
  our edge; its codec row is the work our side adds.

Usage:
    python benchmarks/transport_overhead.py [--short] [--frames N]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "src") not in sys.path:  # runnable without an installed package too
    sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead_paths import CODEC_PATHS, EDGE_HOPS  # noqa: E402

TARGET_HOP_MS = 1.0
FRAME_S = 0.02


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    return float(np.percentile(values, q)) if values else float("nan")


def speech_like_frames(n: int, rate: int = 16_000) -> list[bytes]:
    """A voiced, amplitude-modulated harmonic signal with noise: codec work is content-independent
    for G.711 and nearly so for Opus, but silence would let Opus take its cheap path."""
    rng = np.random.default_rng(7)
    t = np.arange(n * rate // 50) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    signal = 0.25 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
    size = rate // 50 * 2
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


def time_per_call(fn: Callable[[int], object], n: int) -> list[float]:
    """µs per call of fn(i) for i in range(n), after a short warm-up."""
    for i in range(min(20, n)):
        fn(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def codec_table(frames: list[bytes], console: Console) -> None:
    table = Table(title=f"Codec path per 20 ms frame (µs, {len(frames)} frames)")
    for col in ("transport", "wire format", "in P50", "in P95", "out P50", "out P95"):
        table.add_column(col, justify="right" if col.startswith(("in", "out")) else "left")
    for path in CODEC_PATHS:
        inbound, outbound = path.build(frames)
        ins = time_per_call(inbound, len(frames))
        outs = time_per_call(outbound, len(frames))
        table.add_row(path.name, path.wire, f"{statistics.median(ins):.1f}", f"{pct(ins, 95):.1f}",
                      f"{statistics.median(outs):.1f}", f"{pct(outs, 95):.1f}")
    console.print(table)


async def edge_table(frames: list[bytes], console: Console) -> bool:
    table = Table(title=f"Added latency per hop over loopback (ms, {len(frames)} frames at 20 ms pace)")
    for col in ("transport", "in P50", "in P95", "out P50", "out P95", "answered"):
        table.add_column(col, justify="left" if col == "transport" else "right")
    ok = True
    for hop in EDGE_HOPS:
        run: Callable[[list[bytes]], Awaitable[tuple[list[float], list[float]]]] = hop.measure
        try:
            inbound, outbound = await asyncio.wait_for(run(frames), timeout=len(frames) * FRAME_S + 60)
        except Exception as exc:  # one broken edge must not hide the others' figures
            table.add_row(hop.name, f"[red]failed: {type(exc).__name__}: {exc}[/]", "", "", "", "")
            ok = False
            continue
        p95s = (pct(inbound, 95), pct(outbound, 95))
        ok &= all(x < TARGET_HOP_MS for x in p95s) and len(outbound) >= len(frames) * 0.95
        table.add_row(hop.name, f"{statistics.median(inbound):.3f}", f"{p95s[0]:.3f}",
                      f"{statistics.median(outbound):.3f}" if outbound else "-", f"{p95s[1]:.3f}",
                      f"{len(outbound)}/{len(frames)}")
    console.print(table)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="few frames: proves the benchmark runs (CI)")
    parser.add_argument("--frames", type=int, default=500, help="frames per measurement (20 ms each)")
    args = parser.parse_args()
    n = 50 if args.short else args.frames
    console = Console(width=110)
    frames = speech_like_frames(n)
    codec_table(frames, console)
    ok = asyncio.run(edge_table(frames, console))
    verdict = "met" if ok else "MISSED"
    console.print(f"target: P95 under {TARGET_HOP_MS:.0f} ms added per hop, every frame answered: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
