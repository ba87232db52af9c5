"""Webhook subscriptions: create, read, list, delete and resume."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clusterops_server.auth.caller import current_caller, require, require_visible
from clusterops_server.auth.policy import Family, Verb
from clusterops_server.clock import Clock
from clusterops_server.domain.errors import NotFound, OutOfRange
from clusterops_server.domain.filtering import Expression
from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.notifications import (
    DeliveryState,
    Subscription,
    SubscriptionState,
)
from clusterops_server.domain.work_requests import (
    EntityType,
    WorkRequestQuery,
    WorkRequestStatus,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.services.idempotency import previous_result, remember
from clusterops_server.store.uow import Store, UnitOfWork

_RESOURCE = "subscription"


@dataclass(frozen=True)
class CreateSubscriptionCommand:
    compartment_id: str
    url: str
    secret: str
    resource_id: str = ""
    resource_type: EntityType | None = None
    statuses: frozenset[WorkRequestStatus] = frozenset()
    filter: str = ""
    request_id: str = ""


class NotificationService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        parse_filter: Callable[[str], Expression | None],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.parse_filter = parse_filter
        self.wake = wake

    def query_of(self, sub: Subscription) -> WorkRequestQuery:
        """The set a subscription delivers: its compartment's work requests that match."""
        return WorkRequestQuery(
            compartment_id=sub.compartment_id,
            resource_id=sub.resource_id,
            resource_type=sub.resource_type,
            statuses=sub.statuses,
            filter=self.parse_filter(sub.filter),
        )

    async def create(self, cmd: CreateSubscriptionCommand) -> Subscription:
        require(Verb.MANAGE, Family.WORK_REQUESTS, cmd.compartment_id)
        async with self.store.write() as uow:
            prior = await previous_result(uow, "CreateSubscription", cmd.request_id, cmd)
            if prior is not None:
                return await self._get(uow, prior["subscription_id"])
            head = (await uow.events.revision_range()).head
            sub = Subscription(
                id=new_id(IdKind.SUBSCRIPTION),
                compartment_id=cmd.compartment_id,
                url=cmd.url,
                secret=cmd.secret,
                created_at=self.clock.now(),
                delivery=DeliveryState(cursor=head),
                resource_id=cmd.resource_id,
                resource_type=cmd.resource_type,
                statuses=cmd.statuses,
                filter=cmd.filter,
            )
            await uow.subscriptions.add(sub)
            await remember(uow, "CreateSubscription", cmd.request_id, {"subscription_id": sub.id})
            await uow.commit()
        self.wake()
        return sub

    async def get(self, subscription_id: str) -> Subscription:
        async with self.store.read() as uow:
            return await self._get(uow, subscription_id)

    async def list_subscriptions(
        self, compartment_id: str, page: PageRequest
    ) -> Page[Subscription]:
        visible = current_caller().compartments(Verb.INSPECT, Family.WORK_REQUESTS)
        async with self.store.read() as uow:
            return await uow.subscriptions.list_subscriptions(visible, compartment_id, page)

    async def delete(self, subscription_id: str) -> None:
        async with self.store.write() as uow:
            await self._get(uow, subscription_id, Verb.MANAGE)
            await uow.subscriptions.delete(subscription_id)
            await uow.commit()

    async def resume(self, subscription_id: str, *, from_head: bool) -> Subscription:
        """Deliver again from the cursor; OUT_OF_RANGE if its history was compacted,
        unless `from_head` accepts the gap."""
        async with self.store.write() as uow:
            sub = await self._get(uow, subscription_id, Verb.USE)
            compacted = (await uow.events.revision_range()).compacted
            if sub.delivery.cursor < compacted:
                if not from_head:
                    raise OutOfRange(
                        f"the events after revision {sub.delivery.cursor} have been compacted "
                        f"(up to {compacted}); resume with from_head to skip them",
                        reason="REVISION_COMPACTED",
                        metadata={
                            "cursor_revision": str(sub.delivery.cursor),
                            "compacted_revision": str(compacted),
                        },
                    )
                sub.delivery.cursor = compacted
            sub.state, sub.suspended_reason = SubscriptionState.ACTIVE, ""
            d = sub.delivery
            d.failures, d.failing_since, d.next_attempt = 0, None, None
            await uow.subscriptions.save_state(sub)
            await uow.commit()
        self.wake()
        return sub

    async def _get(
        self, uow: UnitOfWork, subscription_id: str, verb: Verb = Verb.READ
    ) -> Subscription:
        sub = await uow.subscriptions.get(subscription_id)
        if sub is None:
            raise NotFound(_RESOURCE, subscription_id)
        require_visible(verb, Family.WORK_REQUESTS, sub.compartment_id, _RESOURCE, sub.id)
        return sub
