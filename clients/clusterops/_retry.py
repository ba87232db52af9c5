"""Retry policy: exponential backoff with jitter, bounded by attempts and the call's deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE})
_TRANSIENT_FOR_READS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried.

    Reads are retried on `read_codes`; a mutation is retried on `codes` only when it
    carries a request_id (the SDK gives every mutation one unless you pass your own),
    so the server answers a retry with the first attempt's result. The call's timeout
    bounds all attempts together; `attempt_timeout` optionally bounds each one.
    `max_attempts=None` retries until the deadline.
    """

    max_attempts: int | None = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    # Each delay is drawn from [delay * (1 - jitter), delay].
    jitter: float = 0.5
    attempt_timeout: float | None = None
    codes: frozenset[grpc.StatusCode] = _TRANSIENT
    read_codes: frozenset[grpc.StatusCode] = _TRANSIENT_FOR_READS

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None: until the deadline)")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")

    def retryable(self, code: grpc.StatusCode, *, read: bool) -> bool:
        return code in (self.read_codes if read else self.codes)

    def attempts_left(self, attempts_made: int) -> bool:
        return self.max_attempts is None or attempts_made < self.max_attempts

    def backoff(self, attempts_made: int) -> float:
        """Seconds to wait before the next attempt, after `attempts_made` failures."""
        ceiling = min(
            self.max_backoff, self.initial_backoff * self.multiplier ** max(0, attempts_made - 1)
        )
        return random.uniform(ceiling * (1 - self.jitter), ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""

RECONNECT = RetryPolicy(max_attempts=None, initial_backoff=0.2, max_backoff=5.0)
"""Watches and waits reconnect with this until their deadline (a server restart is not fatal)."""
