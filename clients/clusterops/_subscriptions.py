"""`client.subscriptions`: webhook subscriptions that push work request changes."""

from __future__ import annotations

from collections.abc import Iterable

from clusterops._enums import EnumArg, enum_values
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._pager import AsyncPager, paged
from clusterops._sync import Facade, blocking, blocking_pager
from clusterops._transport import Transport
from clusterops._work_requests import idempotency_key
from clusterops.v1 import notifications_pb2 as pb
from clusterops.v1 import notifications_pb2_grpc as pb_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb


class AsyncSubscriptions:
    """Webhook subscriptions: signed CloudEvents POSTed for each change of a set of
    work requests, in order, at least once."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._stub = pb_grpc.NotificationServiceStub(transport.channel)

    async def create(
        self,
        compartment_id: str,
        *,
        url: str,
        secret: str,
        resource_id: str = "",
        resource_type: str = "",
        statuses: Iterable[EnumArg] = (),
        filter: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Subscription:
        """Deliver the changes of the compartment's matching work requests to `url`
        (https; http only to a loopback address), signed with `secret` (HMAC-SHA256 in
        the X-Clusterops-Signature header), starting with the changes after now."""
        response = await self._transport.unary(
            self._stub.CreateSubscription,
            pb.CreateSubscriptionRequest(
                compartment_id=compartment_id,
                url=url,
                secret=secret,
                resource_id=resource_id,
                resource_type=resource_type,
                statuses=enum_values(wr_pb.WorkRequestStatus, statuses, argument="statuses"),
                filter=filter,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.subscription

    async def get(
        self,
        subscription_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Subscription:
        """A subscription and its delivery state (cursor, last attempt and status, failures)."""
        response = await self._transport.unary(
            self._stub.GetSubscription,
            pb.GetSubscriptionRequest(subscription_id=subscription_id),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.subscription

    def list(
        self,
        *,
        compartment_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.Subscription]:
        """Subscriptions, oldest first, fetched lazily."""
        return paged(
            self._transport,
            self._stub.ListSubscriptions,
            pb.ListSubscriptionsRequest(
                compartment_id=compartment_id, page_size=page_size, page_token=page_token
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.subscriptions,
        )

    async def delete(
        self,
        subscription_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> None:
        """Delete a subscription (safe to retry: deleting is idempotent in effect)."""
        await self._transport.unary(
            self._stub.DeleteSubscription,
            pb.DeleteSubscriptionRequest(subscription_id=subscription_id),
            CallOptions(timeout, metadata, retry),
            read=False,
        )

    async def resume(
        self,
        subscription_id: str,
        *,
        from_head: bool = False,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Subscription:
        """Resume a suspended subscription from its cursor. Raises OutOfRange if the
        events after it were compacted, unless `from_head` accepts skipping them."""
        response = await self._transport.unary(
            self._stub.ResumeSubscription,
            pb.ResumeSubscriptionRequest(subscription_id=subscription_id, from_head=from_head),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.subscription


class Subscriptions(Facade[AsyncSubscriptions]):
    """Webhook subscriptions: signed CloudEvents POSTed for each change of a set of
    work requests, in order, at least once."""

    create = blocking(AsyncSubscriptions.create)
    get = blocking(AsyncSubscriptions.get)
    list = blocking_pager(AsyncSubscriptions.list)
    delete = blocking(AsyncSubscriptions.delete)
    resume = blocking(AsyncSubscriptions.resume)
