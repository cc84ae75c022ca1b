"""Audio primitives: frames, G.711 codecs, streaming resampling, WAV I/O."""
