"""The simulator's own tables, taking over what it kept in the service's schema.

Before this branch existed the simulator's faults and add-ons were the service's tables
sim_faults and sim_addons. Their rows are copied here; the service's migration 0008 then
drops those tables (this branch runs first, wherever the simulated provider runs).

Revision ID: sim_0001
Revises:
Create Date: 2026-12-05 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sim_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COPIED = {
    "simulator_faults": (
        "sim_faults",
        "id, target, action, remaining, message, created_at",
    ),
    "simulator_addons": (
        "sim_addons",
        "cluster_id, name, version, configurations, managed, resources, unhealthy, updated_at",
    ),
}


def upgrade() -> None:
    op.create_table(
        "simulator_faults",
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulator_faults")),
    )
    with op.batch_alter_table("simulator_faults", schema=None) as batch_op:
        batch_op.create_index("ix_simulator_faults_action", ["action", "target"], unique=False)
    op.create_table(
        "simulator_addons",
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("configurations", sa.JSON(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("unhealthy", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cluster_id", "name", name=op.f("pk_simulator_addons")),
    )
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for table, (old, columns) in _COPIED.items():
        if old in existing:
            op.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old}")
    if "sim_faults" in existing and op.get_bind().dialect.name == "postgresql":
        # Copied ids were not drawn from the new table's sequence: move it past them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('simulator_faults', 'id'), "
            "COALESCE((SELECT MAX(id) FROM simulator_faults), 0) + 1, false)"
        )


def downgrade() -> None:
    op.drop_table("simulator_addons")
    with op.batch_alter_table("simulator_faults", schema=None) as batch_op:
        batch_op.drop_index("ix_simulator_faults_action")
    op.drop_table("simulator_faults")
