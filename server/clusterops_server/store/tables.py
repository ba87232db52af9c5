"""The relational schema. Rows never leave the store: repositories turn them into domain objects.

Alembic migrations under store/migrations create this schema; a test checks that the
migrated database and these declarations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(32)
# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class StoreStateRow(Base):
    """One row: the store-wide revision counter and the compaction watermark."""

    __tablename__ = "store_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    compacted_revision: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ClusterRow(Base):
    __tablename__ = "clusters"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    compartment_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kubernetes_version: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(String(64))
    plan_id: Mapped[str] = mapped_column(String(64), server_default="")
    global_account_id: Mapped[str] = mapped_column(String(64))
    sub_account_id: Mapped[str] = mapped_column(String(64))
    shoot_name: Mapped[str] = mapped_column(String(63))
    maintenance_start: Mapped[str | None] = mapped_column(String(5))
    maintenance_end: Mapped[str | None] = mapped_column(String(5))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    lifecycle_state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index(
            "uq_clusters_live_name",
            "compartment_id",
            "name",
            unique=True,
            sqlite_where=text("lifecycle_state != 'DELETED'"),
            postgresql_where=text("lifecycle_state != 'DELETED'"),
        ),
    )


class NodePoolRow(Base):
    __tablename__ = "node_pools"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"), index=True)
    compartment_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(63))
    kubernetes_version: Mapped[str] = mapped_column(String(32))
    node_shape: Mapped[str] = mapped_column(String(64))
    node_count: Mapped[int] = mapped_column(Integer)
    lifecycle_state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index(
            "uq_node_pools_live_name",
            "cluster_id",
            "name",
            unique=True,
            sqlite_where=text("lifecycle_state != 'DELETED'"),
            postgresql_where=text("lifecycle_state != 'DELETED'"),
        ),
    )


class NodeRow(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    node_pool_id: Mapped[str] = mapped_column(ForeignKey("node_pools.id"), index=True)
    cluster_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(80))
    lifecycle_state: Mapped[str] = mapped_column(String(16))
    lifecycle_details: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkRequestRow(Base):
    __tablename__ = "work_requests"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    compartment_id: Mapped[str] = mapped_column(String(64))
    operation_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    percent_complete: Mapped[float] = mapped_column(Float)
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revision: Mapped[int] = mapped_column(BigInteger)
    # The operation's input, as the engine needs it to run (or resume) the work.
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Scheduling: which server runs it, until when, and when it may run next.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    # The newest row of work_request_errors, kept here so reads need no second query.
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who asked for it, and why (issue 16).
    created_by: Mapped[str] = mapped_column(Text, server_default="")
    reason: Mapped[str] = mapped_column(Text, server_default="")

    __table_args__ = (
        Index("ix_work_requests_runnable", "status", "run_after"),
        Index("ix_work_requests_listing", "compartment_id", "accepted_at", "id"),
        Index("ix_work_requests_accepted", "accepted_at", "id"),
        Index("ix_work_requests_created_by", "created_by", "accepted_at", "id"),
        # Lists filtered by these read them in list order (0010): a page reads its page.
        Index("ix_work_requests_status_listing", "status", "accepted_at", "id"),
        Index("ix_work_requests_operation_listing", "operation_type", "accepted_at", "id"),
        Index(
            "ix_work_requests_compartment_status_listing",
            "compartment_id",
            "status",
            "accepted_at",
            "id",
        ),
    )


class WorkRequestResourceRow(Base):
    __tablename__ = "work_request_resources"
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    action_type: Mapped[str] = mapped_column(String(16))
    entity_uri: Mapped[str] = mapped_column(String(256))
    position: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_work_request_resources_identifier", "identifier"),)


class WorkRequestLogRow(Base):
    __tablename__ = "work_request_logs"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"))
    message: Mapped[str] = mapped_column(Text)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_work_request_logs_wr", "work_request_id", "id"),)


class WorkRequestErrorRow(Base):
    __tablename__ = "work_request_errors"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_work_request_errors_wr", "work_request_id", "id"),)


class ResourceLockRow(Base):
    """At most one non-terminal work request per resource: the primary key enforces it."""

    __tablename__ = "resource_locks"
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"), index=True)


class WorkRequestStepRow(Base):
    """The durable journal of an operation's steps: a finished step never runs again."""

    __tablename__ = "work_request_steps"
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"), primary_key=True)
    step_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class WorkRequestEventRow(Base):
    """Every committed change of a work request, in revision order, for watchers."""

    __tablename__ = "work_request_events"
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    work_request_id: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_work_request_events_wr", "work_request_id", "revision"),
        Index("ix_work_request_events_recorded", "recorded_at"),
    )


class IdempotencyKeyRow(Base):
    """A mutating call's request_id, the fingerprint of its body, and what it produced."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class UpgradeWorkflowRow(Base):
    """A cluster upgrade workflow; its task points are a small JSON list read with it."""

    __tablename__ = "upgrade_workflows"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    compartment_id: Mapped[str] = mapped_column(String(64))
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"), index=True)
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    cluster_version: Mapped[str] = mapped_column(String(32))
    target_version: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(16))
    points: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_upgrade_workflows_created", "created_at", "id"),
        Index("ix_upgrade_workflows_listing", "compartment_id", "created_at", "id"),
    )


# ---- add-ons (issue 7) ----


class AddonRow(Base):
    """An add-on on a cluster, and its durable reconciliation schedule."""

    __tablename__ = "addons"
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    compartment_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    current_installed_version: Mapped[str] = mapped_column(String(32))
    configurations: Mapped[dict[str, str]] = mapped_column(JSON)
    lifecycle_state: Mapped[str] = mapped_column(String(16))
    error: Mapped[dict[str, str] | None] = mapped_column(JSON)
    work_request_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    row_version: Mapped[int] = mapped_column(Integer)
    # The reconciler finds due checks through this index, never by one timer per add-on.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    reconciliation_id: Mapped[str] = mapped_column(String(32))
    attention_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attention_checks: Mapped[int] = mapped_column(Integer)


class OrchestrationRow(Base):
    """A KEB-style orchestration; its operation counts by state are kept with it."""

    __tablename__ = "orchestrations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    compartment_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The current run; a retry of a finished orchestration starts a new one.
    work_request_id: Mapped[str] = mapped_column(ForeignKey("work_requests.id"))
    operation_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)
    # Issue 16: who created it, and what the rollout controls decided (stages, pause,
    # halt); NULL for an orchestration that never used them.
    created_by: Mapped[str] = mapped_column(Text, server_default="")
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_orchestrations_created", "created_at", "id"),
        Index("ix_orchestrations_listing", "compartment_id", "created_at", "id"),
    )


class OrchestrationOperationRow(Base):
    """One cluster's operation in an orchestration; earlier attempts are a JSON list."""

    __tablename__ = "orchestration_operations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    orchestration_id: Mapped[str] = mapped_column(ForeignKey("orchestrations.id"))
    compartment_id: Mapped[str] = mapped_column(String(64))
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"))
    global_account_id: Mapped[str] = mapped_column(String(64))
    sub_account_id: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    plan_name: Mapped[str] = mapped_column(String(64))
    plan_id: Mapped[str] = mapped_column(String(64), server_default="")
    shoot_name: Mapped[str] = mapped_column(String(63))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    maintenance_start: Mapped[str | None] = mapped_column(String(5))
    maintenance_end: Mapped[str | None] = mapped_column(String(5))
    cluster_version: Mapped[str] = mapped_column(String(32))
    target_version: Mapped[str] = mapped_column(String(32))
    upgrade_workflow_id: Mapped[str | None] = mapped_column(ID)
    work_request_id: Mapped[str | None] = mapped_column(ID)
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a waiting operation may start; NULL once it started or ended, so the
    # scheduler's index holds only the operations it still has to start.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The index of its stage (0 without stages); an operation of a stage not yet open has
    # no due_at.
    stage: Mapped[int] = mapped_column(Integer, server_default="0")
    # The work request that held its cluster when it last tried to start.
    blocked_by: Mapped[str | None] = mapped_column(ID)

    __table_args__ = (
        Index("ix_orchestration_operations_listing", "orchestration_id", "id"),
        Index("ix_orchestration_operations_state", "orchestration_id", "state", "id"),
        Index("ix_orchestration_operations_due", "orchestration_id", "due_at", "id"),
        Index("ix_orchestration_operations_stage", "orchestration_id", "stage", "id"),
    )


class PageTokenKeyRow(Base):
    """The secrets page tokens are signed with, shared by every replica; the newest signs."""

    __tablename__ = "page_token_keys"
    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---- webhook subscriptions (issue 15) ----


class WebhookSubscriptionRow(Base):
    """A webhook subscription, its durable delivery cursor and its delivery lease."""

    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    compartment_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    statuses: Mapped[list[str]] = mapped_column(JSON)
    filter: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    suspended_reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cursor: Mapped[int] = mapped_column(BigInteger)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_webhook_subscriptions_listing", "compartment_id", "created_at", "id"),
        Index("ix_webhook_subscriptions_state", "state", "lease_expires_at"),
    )
