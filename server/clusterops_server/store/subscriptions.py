"""Webhook subscriptions, their delivery cursors and the leases that share them out."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.listing import Page, PageRequest, fingerprint
from clusterops_server.domain.notifications import (
    DeliveryState,
    Subscription,
    SubscriptionState,
)
from clusterops_server.domain.work_requests import EntityType, WorkRequestStatus
from clusterops_server.store.paging import Keyset, paginate
from clusterops_server.store.tables import WebhookSubscriptionRow as Row


def _to_domain(row: Row) -> Subscription:
    return Subscription(
        id=row.id,
        compartment_id=row.compartment_id,
        url=row.url,
        secret=row.secret,
        created_at=row.created_at,
        delivery=DeliveryState(
            cursor=row.cursor,
            last_attempt=row.last_attempt_at,
            last_status=row.last_status,
            last_error=row.last_error,
            failures=row.failures,
            failing_since=row.failing_since,
            next_attempt=row.next_attempt_at,
        ),
        resource_id=row.resource_id,
        resource_type=EntityType(row.resource_type) if row.resource_type else None,
        statuses=frozenset(WorkRequestStatus(s) for s in row.statuses),
        filter=row.filter,
        state=SubscriptionState(row.state),
        suspended_reason=row.suspended_reason,
        owner=row.lease_owner,
    )


def _state_values(sub: Subscription) -> dict[str, object]:
    d = sub.delivery
    return {
        "state": sub.state.value,
        "suspended_reason": sub.suspended_reason,
        "cursor": d.cursor,
        "last_attempt_at": d.last_attempt,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "failures": d.failures,
        "failing_since": d.failing_since,
        "next_attempt_at": d.next_attempt,
    }


def _free(owner: str, now: datetime) -> ColumnElement[bool]:
    return or_(Row.lease_owner.is_(None), Row.lease_expires_at < now, Row.lease_owner == owner)


class SubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, sub: Subscription) -> None:
        self.session.add(
            Row(
                id=sub.id,
                compartment_id=sub.compartment_id,
                url=sub.url,
                secret=sub.secret,
                resource_id=sub.resource_id,
                resource_type=sub.resource_type.value if sub.resource_type else "",
                statuses=sorted(s.value for s in sub.statuses),
                filter=sub.filter,
                created_at=sub.created_at,
                lease_owner=None,
                lease_expires_at=None,
                **_state_values(sub),
            )
        )
        await self.session.flush()

    async def get(self, subscription_id: str) -> Subscription | None:
        row = await self.session.scalar(select(Row).where(Row.id == subscription_id))
        return None if row is None else _to_domain(row)

    async def list_subscriptions(
        self, compartments: frozenset[str] | None, compartment_id: str, page: PageRequest
    ) -> Page[Subscription]:
        stmt = select(Row)
        if compartments is not None:
            stmt = stmt.where(Row.compartment_id.in_(sorted(compartments)))
        if compartment_id:
            stmt = stmt.where(Row.compartment_id == compartment_id)
        return await paginate(
            self.session,
            stmt,
            Keyset((Row.created_at, Row.id)),
            page,
            fingerprint("subscriptions", compartment_id),
            _to_domain,
            key_of=lambda row: (row.created_at, row.id),
        )

    async def delete(self, subscription_id: str) -> None:
        await self.session.execute(delete(Row).where(Row.id == subscription_id))

    async def save_state(self, sub: Subscription, *, owner: str | None = None) -> bool:
        """Write the state and delivery fields; with `owner`, only while it holds the
        lease (a replica that lost it must not move the cursor). False if not written."""
        stmt = update(Row).where(Row.id == sub.id)
        if owner is not None:
            stmt = stmt.where(Row.lease_owner == owner)
        result = await self.session.execute(stmt.values(**_state_values(sub)))
        return bool(getattr(result, "rowcount", 1))

    async def claimable(self, owner: str, now: datetime, limit: int) -> list[str]:
        """ACTIVE subscriptions no live lease holds, or that `owner` holds."""
        return list(
            (
                await self.session.scalars(
                    select(Row.id)
                    .where(Row.state == SubscriptionState.ACTIVE.value, _free(owner, now))
                    .order_by(Row.id)
                    .limit(limit)
                )
            ).all()
        )

    async def claim(self, owner: str, now: datetime, until: datetime, limit: int) -> list[str]:
        """Lease up to `limit` ACTIVE subscriptions that no live lease holds (or that
        `owner` holds already) until `until`; returns their ids."""
        free = or_(Row.lease_owner.is_(None), Row.lease_expires_at < now, Row.lease_owner == owner)
        candidates = (
            await self.session.scalars(
                select(Row.id)
                .where(Row.state == SubscriptionState.ACTIVE.value, free)
                .order_by(Row.id)
                .limit(limit)
            )
        ).all()
        claimed: list[str] = []
        for subscription_id in candidates:
            # The WHERE is checked again by the UPDATE: of two replicas racing, one wins.
            result = await self.session.execute(
                update(Row)
                .where(and_(Row.id == subscription_id, free))
                .values(lease_owner=owner, lease_expires_at=until)
            )
            if getattr(result, "rowcount", 0):
                claimed.append(subscription_id)
        return claimed

    async def renew(self, subscription_id: str, owner: str, until: datetime) -> bool:
        result = await self.session.execute(
            update(Row)
            .where(Row.id == subscription_id, Row.lease_owner == owner)
            .values(lease_expires_at=until)
        )
        return bool(getattr(result, "rowcount", 0))

    async def release(self, subscription_id: str, owner: str) -> None:
        await self.session.execute(
            update(Row)
            .where(Row.id == subscription_id, Row.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
