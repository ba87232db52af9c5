"""Helpers for SDK tests: a client on an in-process app, and an interceptor that counts calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from clusterops import AsyncClient, RetryPolicy
from clusterops_server.app import App

# Quick reconnects so tests that restart a server do not wait on grpc's backoff.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)
QUICK_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


class CallCounter(grpc.aio.UnaryUnaryClientInterceptor):
    """Counts unary calls by method name, e.g. calls["ListWorkRequests"]."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        self.calls[name.rsplit("/", 1)[-1]] += 1
        return await continuation(client_call_details, request)


def target(app: App) -> str:
    return f"127.0.0.1:{app.port}"


@asynccontextmanager
async def sdk_client(app: App, **options: Any) -> AsyncIterator[AsyncClient]:
    options.setdefault("retry", QUICK_RETRY)
    async with AsyncClient(target(app), **options) as client:
        yield client
