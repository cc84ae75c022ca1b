"""Transports: each turns a provider protocol into 20 ms PCM16 16 kHz frames and call events, and back."""
