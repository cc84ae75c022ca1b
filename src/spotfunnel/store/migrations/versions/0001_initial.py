"""Initial schema: bookings, outbox jobs, SMS messages, call reports (portable SQL: SQLite and PostgreSQL).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> "sa.Column[datetime]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _bookings() -> None:
    op.create_table(
        "bookings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        _ts("start_utc"),
        _ts("end_utc"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by_call", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_bookings_tenant_status_start", "bookings", ["tenant_id", "status", "start_utc"])
    op.create_index("ix_bookings_tenant_phone", "bookings", ["tenant_id", "phone"])


def _outbox_jobs() -> None:
    op.create_table(
        "outbox_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at", nullable=True),
        _ts("claimed_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("finished_at", nullable=True),
    )
    op.create_index("ix_outbox_jobs_status_next", "outbox_jobs", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_jobs_tenant_status", "outbox_jobs", ["tenant_id", "status"])


def _sms_messages() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("to", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("provider", sa.String(32), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_sms_messages_tenant_created", "sms_messages", ["tenant_id", "created_at"])


def _call_reports() -> None:
    op.create_table(
        "call_reports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=False, unique=True),
        sa.Column("caller_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        _ts("started_at"),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("turn_latencies_ms", sa.JSON(), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_call_reports_tenant_started", "call_reports", ["tenant_id", "started_at"])



def upgrade() -> None:
    _bookings()
    _outbox_jobs()
    _sms_messages()
    _call_reports()


def downgrade() -> None:
    for table in ("call_reports", "sms_messages", "outbox_jobs", "bookings"):
        op.drop_table(table)
