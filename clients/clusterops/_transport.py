"""The choke point: every RPC the SDK makes goes through `Transport`.

It applies the deadline, the metadata (bearer token included) and the retry policy,
and turns every grpc.aio.AioRpcError into a typed ClusteropsError raised `from` it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator
from typing import TypeVar

import grpc

from clusterops._errors import error_from_rpc
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._retry import NO_RETRY, RetryPolicy

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def checked_timeout(seconds: float | None) -> float | None:
    """`seconds` if it is a usable timeout: None (no deadline) or a finite number > 0.

    grpc takes a negative timeout as one already passed and a NaN as none at all, so a
    computed timeout gone wrong would fail late and obscurely; it fails here, at once."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"timeout must be a finite number of seconds above 0, not {seconds!r}")
    return seconds


class Deadline:
    """An absolute point on the monotonic clock (or none) that several attempts share."""

    def __init__(self, seconds: float | None) -> None:
        seconds = checked_timeout(seconds)
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def allows(self, delay: float) -> bool:
        """Whether waiting `delay` seconds still leaves time for another attempt."""
        return self.at is None or time.monotonic() + delay < self.at

    @property
    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


class Transport:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None,
        retry: RetryPolicy | None,
        metadata: Metadata,
    ) -> None:
        self.channel = channel
        self.default_timeout = checked_timeout(timeout)
        self.default_retry = retry or NO_RETRY
        self._metadata = tuple(metadata)

    def deadline(self, timeout: Timeout) -> Deadline:
        return Deadline(self.default_timeout if timeout is DEFAULT else timeout)

    def policy(self, retry: Retry, *, default: RetryPolicy | None = None) -> RetryPolicy:
        if retry is DEFAULT:
            return default or self.default_retry
        return retry or NO_RETRY

    def metadata(self, extra: Metadata) -> tuple[tuple[str, str], ...]:
        return (*self._metadata, *extra)

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        options: CallOptions,
        *,
        read: bool,
    ) -> Resp:
        """One unary RPC, retried per the policy: reads on transient codes, mutations
        only when they carry a request_id."""
        deadline = self.deadline(options.timeout)
        policy = self.policy(options.retry)
        retry_safe = read or bool(getattr(request, "request_id", ""))
        metadata = self.metadata(options.metadata)
        attempts = 0
        while True:
            attempts += 1
            try:
                return await method(
                    request, timeout=_attempt_timeout(deadline, policy), metadata=metadata
                )
            except grpc.aio.AioRpcError as failure:
                delay = policy.backoff(attempts)
                if not (
                    retry_safe
                    and policy.retryable(failure.code(), read=read)
                    and policy.attempts_left(attempts)
                    and deadline.allows(delay)
                ):
                    raise error_from_rpc(failure) from failure
            await asyncio.sleep(delay)

    async def stream(
        self,
        method: grpc.aio.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None,
        metadata: Metadata,
    ) -> AsyncGenerator[Resp, None]:
        """One server-streaming RPC, not retried (resuming is the caller's business)."""
        call = method(request, timeout=timeout, metadata=self.metadata(metadata))
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as failure:
            raise error_from_rpc(failure) from failure
        finally:
            call.cancel()


def _attempt_timeout(deadline: Deadline, policy: RetryPolicy) -> float | None:
    remaining = deadline.remaining()
    if policy.attempt_timeout is None:
        return remaining
    if remaining is None:
        return policy.attempt_timeout
    return min(remaining, policy.attempt_timeout)
