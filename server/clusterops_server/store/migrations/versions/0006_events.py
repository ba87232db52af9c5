"""Events out: a work request's newest error kept on its row (issue 15).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-05 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
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


def downgrade() -> None:
    with op.batch_alter_table("work_requests") as batch:
        batch.drop_column("last_error_at")
        batch.drop_column("last_error_message")
        batch.drop_column("last_error_code")
