"""Prometheus metrics: RPCs by method and status, their latency, and the engine and watch
fan-out as they are now. Each App has its own registry (tests run several Apps at once);
`serve --metrics-port` exposes it over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = Counter(
            "clusterops_rpcs",
            "RPCs handled, by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "clusterops_rpc_seconds",
            "Time to answer a unary RPC, or to the end of a stream.",
            ["method"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read when scraped."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.rpcs.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
