"""Initial schema: inventory, work requests, their journal and events, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 15:50:12.001597
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kubernetes_version", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.String(length=64), nullable=False),
        sa.Column("global_account_id", sa.String(length=64), nullable=False),
        sa.Column("sub_account_id", sa.String(length=64), nullable=False),
        sa.Column("shoot_name", sa.String(length=63), nullable=False),
        sa.Column("maintenance_start", sa.String(length=5), nullable=True),
        sa.Column("maintenance_end", sa.String(length=5), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
    )
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clusters_compartment_id"), ["compartment_id"], unique=False
        )
        batch_op.create_index(
            "uq_clusters_live_name",
            ["compartment_id", "name"],
            unique=True,
            sqlite_where=sa.text("lifecycle_state != 'DELETED'"),
            postgresql_where=sa.text("lifecycle_state != 'DELETED'"),
        )

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "request_id", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False
        )

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
        "store_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("compacted_revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_state")),
    )
    op.execute("INSERT INTO store_state (id, revision, compacted_revision) VALUES (1, 0, 0)")
    op.create_table(
        "work_request_events",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_work_request_events")),
    )
    with op.batch_alter_table("work_request_events", schema=None) as batch_op:
        batch_op.create_index("ix_work_request_events_recorded", ["recorded_at"], unique=False)
        batch_op.create_index(
            "ix_work_request_events_wr", ["work_request_id", "revision"], unique=False
        )

    op.create_table(
        "work_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("operation_type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("percent_complete", sa.Float(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_requests")),
    )
    with op.batch_alter_table("work_requests", schema=None) as batch_op:
        batch_op.create_index("ix_work_requests_accepted", ["accepted_at", "id"], unique=False)
        batch_op.create_index(
            "ix_work_requests_listing", ["compartment_id", "accepted_at", "id"], unique=False
        )
        batch_op.create_index("ix_work_requests_runnable", ["status", "run_after"], unique=False)

    op.create_table(
        "node_pools",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("compartment_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kubernetes_version", sa.String(length=32), nullable=False),
        sa.Column("node_shape", sa.String(length=64), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_node_pools_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_pools")),
    )
    with op.batch_alter_table("node_pools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_pools_cluster_id"), ["cluster_id"], unique=False)
        batch_op.create_index(
            "uq_node_pools_live_name",
            ["cluster_id", "name"],
            unique=True,
            sqlite_where=sa.text("lifecycle_state != 'DELETED'"),
            postgresql_where=sa.text("lifecycle_state != 'DELETED'"),
        )

    op.create_table(
        "resource_locks",
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_resource_locks_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint("resource_id", name=op.f("pk_resource_locks")),
    )
    with op.batch_alter_table("resource_locks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resource_locks_work_request_id"), ["work_request_id"], unique=False
        )

    op.create_table(
        "work_request_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_work_request_errors_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_request_errors")),
    )
    with op.batch_alter_table("work_request_errors", schema=None) as batch_op:
        batch_op.create_index("ix_work_request_errors_wr", ["work_request_id", "id"], unique=False)

    op.create_table(
        "work_request_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_work_request_logs_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_request_logs")),
    )
    with op.batch_alter_table("work_request_logs", schema=None) as batch_op:
        batch_op.create_index("ix_work_request_logs_wr", ["work_request_id", "id"], unique=False)

    op.create_table(
        "work_request_resources",
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("identifier", sa.String(length=64), nullable=False),
        sa.Column("action_type", sa.String(length=16), nullable=False),
        sa.Column("entity_uri", sa.String(length=256), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_work_request_resources_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint(
            "work_request_id", "entity_type", "identifier", name=op.f("pk_work_request_resources")
        ),
    )
    with op.batch_alter_table("work_request_resources", schema=None) as batch_op:
        batch_op.create_index("ix_work_request_resources_identifier", ["identifier"], unique=False)

    op.create_table(
        "work_request_steps",
        sa.Column("work_request_id", sa.String(length=32), nullable=False),
        sa.Column("step_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["work_request_id"],
            ["work_requests.id"],
            name=op.f("fk_work_request_steps_work_request_id_work_requests"),
        ),
        sa.PrimaryKeyConstraint("work_request_id", "step_key", name=op.f("pk_work_request_steps")),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("node_pool_id", sa.String(length=32), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=16), nullable=False),
        sa.Column("lifecycle_details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_pool_id"], ["node_pools.id"], name=op.f("fk_nodes_node_pool_id_node_pools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_node_pool_id"), ["node_pool_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_node_pool_id"))

    op.drop_table("nodes")
    op.drop_table("work_request_steps")
    with op.batch_alter_table("work_request_resources", schema=None) as batch_op:
        batch_op.drop_index("ix_work_request_resources_identifier")

    op.drop_table("work_request_resources")
    with op.batch_alter_table("work_request_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_work_request_logs_wr")

    op.drop_table("work_request_logs")
    with op.batch_alter_table("work_request_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_work_request_errors_wr")

    op.drop_table("work_request_errors")
    with op.batch_alter_table("resource_locks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_locks_work_request_id"))

    op.drop_table("resource_locks")
    with op.batch_alter_table("node_pools", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_node_pools_live_name",
            sqlite_where=sa.text("lifecycle_state != 'DELETED'"),
            postgresql_where=sa.text("lifecycle_state != 'DELETED'"),
        )
        batch_op.drop_index(batch_op.f("ix_node_pools_cluster_id"))

    op.drop_table("node_pools")
    with op.batch_alter_table("work_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_work_requests_runnable")
        batch_op.drop_index("ix_work_requests_listing")
        batch_op.drop_index("ix_work_requests_accepted")

    op.drop_table("work_requests")
    with op.batch_alter_table("work_request_events", schema=None) as batch_op:
        batch_op.drop_index("ix_work_request_events_wr")
        batch_op.drop_index("ix_work_request_events_recorded")

    op.drop_table("work_request_events")
    op.drop_table("store_state")
    with op.batch_alter_table("sim_faults", schema=None) as batch_op:
        batch_op.drop_index("ix_sim_faults_action")

    op.drop_table("sim_faults")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_clusters_live_name",
            sqlite_where=sa.text("lifecycle_state != 'DELETED'"),
            postgresql_where=sa.text("lifecycle_state != 'DELETED'"),
        )
        batch_op.drop_index(batch_op.f("ix_clusters_compartment_id"))

    op.drop_table("clusters")
