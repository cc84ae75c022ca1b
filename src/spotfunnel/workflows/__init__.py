"""Layer 3: the outbox worker and its job handlers."""
