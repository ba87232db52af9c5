"""request_id bookkeeping: a retried mutation answers with what the first call produced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.errors import InvalidArgument
from clusterops_server.store.tables import IdempotencyKeyRow


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a request_id: fresh (run the mutation) or a stored result."""

    fresh: bool
    result: dict[str, Any]


class IdempotencyRepository:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    async def claim(
        self, scope: str, request_id: str, request_fingerprint: str, now: datetime
    ) -> Claim:
        """Reserve `request_id` in this transaction, or return the result it already has.

        The same id with a different request body is refused: reusing an id for a new
        request is a client bug, and silently running a second operation would hide it.
        """
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(
            IdempotencyKeyRow
        )
        result = await self.session.execute(
            insert.values(
                scope=scope,
                request_id=request_id,
                fingerprint=request_fingerprint,
                result={},
                created_at=now,
            ).on_conflict_do_nothing(index_elements=["scope", "request_id"])
        )
        if getattr(result, "rowcount", 1) == 1:
            return Claim(True, {})
        row = await self.session.get(IdempotencyKeyRow, (scope, request_id))
        assert row is not None
        if row.fingerprint != request_fingerprint:
            raise InvalidArgument.one(
                "request_id",
                "was already used for a different request; use a new request_id for a new request",
            )
        return Claim(False, dict(row.result))

    async def record(self, scope: str, request_id: str, result: dict[str, Any]) -> None:
        row = await self.session.get(IdempotencyKeyRow, (scope, request_id))
        assert row is not None
        row.result = result

    async def expire(self, older_than: datetime) -> None:
        await self.session.execute(
            delete(IdempotencyKeyRow).where(IdempotencyKeyRow.created_at < older_than)
        )

    async def exists(self, scope: str, request_id: str) -> bool:
        return (
            await self.session.scalar(
                select(IdempotencyKeyRow.request_id).where(
                    IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.request_id == request_id
                )
            )
        ) is not None
