"""Persistence: SQLAlchemy models, Alembic migrations, the booking ledger, the outbox."""
