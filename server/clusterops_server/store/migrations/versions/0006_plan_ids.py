"""Clusters and orchestration operations carry their plan's id (KEB's servicePlanID).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before plans had ids keep "" (unknown), as a cluster on a plan the
    # catalogue does not list would.
    for table in ("clusters", "orchestration_operations"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("plan_id", sa.String(length=64), nullable=False, server_default="")
            )


def downgrade() -> None:
    for table in ("orchestration_operations", "clusters"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("plan_id")
