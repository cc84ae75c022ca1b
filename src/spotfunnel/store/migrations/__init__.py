"""Alembic migrations shipped with the package (run by Database.migrate())."""
