"""The simulator's tables leave the service's schema (issue 18).

sim_faults and sim_addons belonged to the simulated provider. Where it runs, its own
migration branch (providers/simulated_migrations, run before this one) has copied their
rows into its own tables; a deployment with another provider never needed them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sim_faults", schema=None) as batch_op:
        batch_op.drop_index("ix_sim_faults_action")
    op.drop_table("sim_faults")
    op.drop_table("sim_addons")


def downgrade() -> None:
    # The tables come back empty: their rows live on in the simulator's own tables.
    op.create_table(
        "sim_faults",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sim_faults")),
    )
    with op.batch_alter_table("sim_faults", schema=None) as batch_op:
        batch_op.create_index("ix_sim_faults_action", ["action", "target"], unique=False)
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
