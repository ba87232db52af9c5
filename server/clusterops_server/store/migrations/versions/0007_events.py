"""Events out (issue 15): a work request's newest error kept on its row; webhook subscriptions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEWEST = (
    "(SELECT e.{column} FROM work_request_errors e WHERE e.work_request_id = work_requests.id "
    "ORDER BY e.id DESC LIMIT 1)"
)


def upgrade() -> None:
    op.add_column("work_requests", sa.Column("last_error_code", sa.String(length=64)))
    op.add_column("work_requests", sa.Column("last_error_message", sa.Text()))
    op.add_column("work_requests", sa.Column("last_error_at", sa.DateTime(timezone=True)))
    # Backfill from the error lists, in one statement (portable SQL: SQLite and PostgreSQL).
    op.execute(
        "UPDATE work_requests SET "
        f"last_error_code = {_NEWEST.format(column='code')}, "
        f"last_error_message = {_NEWEST.format(column='message')}, "
        f"last_error_at = {_NEWEST.format(column='logged_at')} "
        "WHERE EXISTS (SELECT 1 FROM work_request_errors e "
        "WHERE e.work_request_id = work_requests.id)"
    )

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=256), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("suspended_reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index(
        "ix_webhook_subscriptions_listing",
        "webhook_subscriptions",
        ["compartment_id", "created_at", "id"],
    )
    op.create_index(
        "ix_webhook_subscriptions_state", "webhook_subscriptions", ["state", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_subscriptions")
    with op.batch_alter_table("work_requests") as batch:
        batch.drop_column("last_error_at")
        batch.drop_column("last_error_message")
        batch.drop_column("last_error_code")
