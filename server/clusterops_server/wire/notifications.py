"""NotificationService: protobuf in, domain call, protobuf out; and the CloudEvents
that webhook deliveries carry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from clusterops.v1 import notifications_pb2 as pb
from clusterops.v1 import notifications_pb2_grpc as pb_grpc
from google.protobuf import json_format

from clusterops_server.domain.notifications import (
    MIN_SECRET_LENGTH,
    Subscription,
    SubscriptionState,
    url_problem,
)
from clusterops_server.domain.work_requests import WorkRequestSetEvent
from clusterops_server.ids import IdKind
from clusterops_server.services.notifications import (
    CreateSubscriptionCommand,
    NotificationService,
)
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator
from clusterops_server.wire.work_requests import (
    FILTER_FIELDS,
    STATUS,
    parse_entity_type,
    set_event_to_proto,
)

STATE = EnumMap(pb.SubscriptionState, SubscriptionState, "SUBSCRIPTION_STATE_")
EVENT_SOURCE = "/clusterops/v1/work-requests"
EVENT_TYPE = "com.clusterops.v1.workrequest.changed"


def subscription_to_proto(sub: Subscription) -> pb.Subscription:
    d = sub.delivery
    return pb.Subscription(
        id=sub.id,
        compartment_id=sub.compartment_id,
        url=sub.url,
        resource_id=sub.resource_id,
        resource_type=sub.resource_type.value if sub.resource_type else "",
        statuses=[STATUS.to_proto(s) for s in sorted(sub.statuses)],  # type: ignore[misc]
        filter=sub.filter,
        state=STATE.to_proto(sub.state),  # type: ignore[arg-type]
        suspended_reason=sub.suspended_reason,
        delivery=pb.DeliveryState(
            cursor_revision=d.cursor,
            last_attempt_time=timestamp(d.last_attempt),
            last_status_code=d.last_status,
            last_error=d.last_error,
            failures_in_a_row=d.failures,
            next_attempt_time=timestamp(d.next_attempt),
        ),
        create_time=timestamp(sub.created_at),
    )


def cloud_event(sub: Subscription, item: WorkRequestSetEvent, at: datetime) -> bytes:
    """A CloudEvents 1.0 event in structured JSON mode: the revision is its id (receivers
    deduplicate on it), the work request its subject, the change (as WatchWorkRequests
    sends it) its data."""
    assert item.event is not None
    data = json_format.MessageToDict(set_event_to_proto(item), preserving_proto_field_name=True)
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(item.revision),
        "source": EVENT_SOURCE,
        "type": EVENT_TYPE,
        "subject": item.event.work_request.id,
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "clusteropssubscription": sub.id,
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def _subscription_id(check: Validator, value: str) -> str:
    check.resource_id("subscription_id", value, IdKind.SUBSCRIPTION)
    return value


@servicer
class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, service: NotificationService) -> None:
        self.service = service

    async def CreateSubscription(  # noqa: N802 (gRPC method names)
        self, request: pb.CreateSubscriptionRequest, context: Any
    ) -> pb.CreateSubscriptionResponse:
        check = Validator()
        compartment = check.compartment("compartment_id", request.compartment_id, required=True)
        problem = url_problem(request.url)
        if problem:
            check.fail("url", problem)
        if len(request.secret) < MIN_SECRET_LENGTH:
            check.fail("secret", f"needs at least {MIN_SECRET_LENGTH} characters")
        elif len(request.secret) > 256:
            check.fail("secret", "is longer than 256 characters")
        command = CreateSubscriptionCommand(
            compartment_id=compartment,
            url=request.url,
            secret=request.secret,
            resource_id=check.text("resource_id", request.resource_id, limit=64),
            resource_type=parse_entity_type(check, request.resource_type),
            statuses=check.enums("statuses", request.statuses, STATUS),
            filter=request.filter,
            request_id=check.request_id("request_id", request.request_id),
        )
        check.filter(request.filter, FILTER_FIELDS)
        check.check()
        sub = await self.service.create(command)
        return pb.CreateSubscriptionResponse(subscription=subscription_to_proto(sub))

    async def GetSubscription(  # noqa: N802
        self, request: pb.GetSubscriptionRequest, context: Any
    ) -> pb.GetSubscriptionResponse:
        check = Validator()
        subscription_id = _subscription_id(check, request.subscription_id)
        check.check()
        sub = await self.service.get(subscription_id)
        return pb.GetSubscriptionResponse(subscription=subscription_to_proto(sub))

    async def ListSubscriptions(  # noqa: N802
        self, request: pb.ListSubscriptionsRequest, context: Any
    ) -> pb.ListSubscriptionsResponse:
        check = Validator()
        compartment = check.compartment("compartment_id", request.compartment_id, required=False)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_subscriptions(compartment, page)
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription_to_proto(s) for s in result.items],
            next_page_token=result.next_page_token,
        )

    async def DeleteSubscription(  # noqa: N802
        self, request: pb.DeleteSubscriptionRequest, context: Any
    ) -> pb.DeleteSubscriptionResponse:
        check = Validator()
        subscription_id = _subscription_id(check, request.subscription_id)
        check.check()
        await self.service.delete(subscription_id)
        return pb.DeleteSubscriptionResponse()

    async def ResumeSubscription(  # noqa: N802
        self, request: pb.ResumeSubscriptionRequest, context: Any
    ) -> pb.ResumeSubscriptionResponse:
        check = Validator()
        subscription_id = _subscription_id(check, request.subscription_id)
        check.check()
        sub = await self.service.resume(subscription_id, from_head=request.from_head)
        return pb.ResumeSubscriptionResponse(subscription=subscription_to_proto(sub))
