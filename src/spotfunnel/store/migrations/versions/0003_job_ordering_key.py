"""Outbox jobs carry their ordering key: jobs about one thing (a booking) run strictly one after another.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_jobs", sa.Column("ordering_key", sa.String(255), nullable=True))
    op.create_index("ix_outbox_jobs_tenant_ordering", "outbox_jobs", ["tenant_id", "ordering_key", "status"])
    # Jobs still to run get the key the worker used to derive from their payload (a booking's id).
    jobs = sa.table("outbox_jobs", sa.column("id", sa.String), sa.column("status", sa.String),
                    sa.column("payload", sa.JSON), sa.column("ordering_key", sa.String))
    conn = op.get_bind()
    waiting = conn.execute(sa.select(jobs.c.id, jobs.c.payload).where(jobs.c.status.in_(("pending", "running"))))
    for job_id, payload in waiting.all():
        key = (payload or {}).get("ordering_key") or (payload or {}).get("booking_id")
        if key:
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(ordering_key=str(key)[:255]))


def downgrade() -> None:
    op.drop_index("ix_outbox_jobs_tenant_ordering", table_name="outbox_jobs")
    with op.batch_alter_table("outbox_jobs") as batch:  # SQLite drops columns by rebuilding the table
        batch.drop_column("ordering_key")
