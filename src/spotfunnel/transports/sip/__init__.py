"""SIP with RTP (G.711): a user agent server, its per-call transport, and a UAC for tests and eval."""
