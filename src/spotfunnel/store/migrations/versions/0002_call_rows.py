"""Calls get our own id beside the provider's: the `calls` table (open-call rows) and report columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("provider_call_id", sa.String(128), nullable=False),
        sa.Column("caller_id", sa.String(32), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("heard", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_calls_status_owner", "calls", ["status", "owner"])
    op.create_index("ix_calls_tenant_provider", "calls", ["tenant_id", "provider_call_id"])
    # Existing reports keep their call id (then the provider's) and get an empty provider id.
    op.add_column("call_reports", sa.Column("provider_call_id", sa.String(128), nullable=False, server_default=""))
    op.add_column("call_reports", sa.Column("direction", sa.String(16), nullable=False, server_default="inbound"))


def downgrade() -> None:
    with op.batch_alter_table("call_reports") as batch:  # SQLite drops columns by rebuilding the table
        batch.drop_column("direction")
        batch.drop_column("provider_call_id")
    op.drop_index("ix_calls_tenant_provider", table_name="calls")
    op.drop_index("ix_calls_status_owner", table_name="calls")
    op.drop_table("calls")
