"""The FastAPI app: Twilio webhooks and media streams, health."""
