"""Rollouts under control (issue 16): who created a work request and why; an
orchestration's creator and rollout progress; each operation's stage and what blocked it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before this knew no principal: "" (unknown), not a guess.
    with op.batch_alter_table("work_requests") as batch:
        batch.add_column(sa.Column("created_by", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
    op.create_index(
        "ix_work_requests_created_by", "work_requests", ["created_by", "accepted_at", "id"]
    )
    with op.batch_alter_table("orchestrations") as batch:
        batch.add_column(sa.Column("created_by", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("rollout", sa.JSON(), nullable=True))
    with op.batch_alter_table("orchestration_operations") as batch:
        batch.add_column(sa.Column("stage", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("blocked_by", sa.String(length=32), nullable=True))
    op.create_index(
        "ix_orchestration_operations_stage",
        "orchestration_operations",
        ["orchestration_id", "stage", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_orchestration_operations_stage", table_name="orchestration_operations")
    with op.batch_alter_table("orchestration_operations") as batch:
        batch.drop_column("blocked_by")
        batch.drop_column("stage")
    with op.batch_alter_table("orchestrations") as batch:
        batch.drop_column("rollout")
        batch.drop_column("created_by")
    op.drop_index("ix_work_requests_created_by", table_name="work_requests")
    with op.batch_alter_table("work_requests") as batch:
        batch.drop_column("reason")
        batch.drop_column("created_by")
