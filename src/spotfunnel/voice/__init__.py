"""Layer 1, the voice core: VAD, turn detection, STT and TTS streams, playout clock, barge-in."""
