"""Work request lists page in bounded time: an index in list order for each filter that
can drive a page (status, operation type, compartment with status; created_by has its
own since 0009).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 17:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_work_requests_status_listing", "work_requests", ["status", "accepted_at", "id"]),
    (
        "ix_work_requests_operation_listing",
        "work_requests",
        ["operation_type", "accepted_at", "id"],
    ),
    (
        "ix_work_requests_compartment_status_listing",
        "work_requests",
        ["compartment_id", "status", "accepted_at", "id"],
    ),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
