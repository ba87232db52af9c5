"""Add-ons with their reconciliation schedule, and the simulated provider's add-on state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "addons",
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("current_installed_version", sa.String(length=32), nullable=False),
        sa.Column("configurations", sa.JSON(), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconciliation_id", sa.String(length=32), nullable=False),
        sa.Column("attention_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attention_checks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_addons_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", "name", name=op.f("pk_addons")),
    )
    with op.batch_alter_table("addons", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_addons_next_check_at"), ["next_check_at"], unique=False
        )

    op.create_table(
        "sim_addons",
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("configurations", sa.JSON(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("unhealthy", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cluster_id", "name", name=op.f("pk_sim_addons")),
    )


def downgrade() -> None:
    op.drop_table("sim_addons")
    with op.batch_alter_table("addons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_addons_next_check_at"))

    op.drop_table("addons")
