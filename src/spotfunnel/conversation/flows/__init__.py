"""Conversation flows: taking a booking slot, and managing (moving, cancelling) an existing booking."""
