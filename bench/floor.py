"""The floor: a bare grpc.aio echo server, and the load client every QPS figure uses.

The same protocol as ../shared/bench/ratio.py, so a figure here agrees with what that
script prints against the same server: the echo server runs in a process of its own, the
load client in this one (64 calls in flight on one channel, each worker looping for 5
seconds, a 200-byte payload for the floor), floor and target alternate twice, and the
best of each counts. Unlike ratio.py, a failed call does not end the run: calls that
fail are counted, and the first failure is kept, so the row can say what went wrong.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

import grpc

METHOD = "/floor.Echo/Get"
PAYLOAD = b"x" * 200


@dataclass(frozen=True)
class Protocol:
    seconds: float = 5.0
    concurrency: int = 64
    rounds: int = 2


QUICK = Protocol(seconds=0.3, concurrency=8, rounds=1)


@dataclass
class Load:
    qps: float
    calls: int
    errors: int = 0
    first_error: str | None = None


def _serve(ports: Queue[int]) -> None:
    async def main() -> None:
        async def get(request: bytes, context: Any) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            "floor.Echo", {"Get": grpc.unary_unary_rpc_method_handler(get)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ports.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


@contextmanager
def floor_server() -> Iterator[str]:
    """The address of a bare echo server running in a fresh process."""
    context = multiprocessing.get_context("spawn")
    ports: Queue[int] = context.Queue()
    process = context.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    try:
        yield f"127.0.0.1:{ports.get(timeout=60)}"
    finally:
        process.terminate()
        process.join(10)


def describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


async def drive(call: Callable[[], Awaitable[Any]], seconds: float, concurrency: int) -> Load:
    """`concurrency` workers each calling `call` in a loop for `seconds`; the first call is
    made (and awaited) before the clock starts, as ratio.py does."""
    first_error: str | None = None
    errors = 0
    try:
        await call()
    except Exception as error:  # recorded in the row, not raised: see the module doc
        errors, first_error = 1, describe(error)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors, first_error
        while time.perf_counter() < stop:
            try:
                await call()
            except Exception as error:
                errors += 1
                first_error = first_error or describe(error)
                continue
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Load(done / (time.perf_counter() - began), done, errors, first_error)


async def floor_load(address: str, seconds: float, concurrency: int) -> Load:
    async with grpc.aio.insecure_channel(address) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        return await drive(lambda: call(PAYLOAD), seconds, concurrency)


@dataclass
class Ratio:
    qps: float
    floor_qps: float
    calls: int
    errors: int
    first_error: str | None

    @property
    def ratio(self) -> float:
        return self.qps / self.floor_qps if self.floor_qps else float("nan")

    def details(self) -> dict[str, Any]:
        return {
            "qps": round(self.qps),
            "floor_qps": round(self.floor_qps),
            "calls": self.calls,
            "errors": self.errors,
        }


def against_floor(
    floor_address: str,
    target: Callable[[float, int], Coroutine[Any, Any, Load]],
    protocol: Protocol,
) -> Ratio:
    """Floor, target, floor, target (`protocol.rounds` times); the best of each.

    `target(seconds, concurrency)` runs one load against the target; each load gets its
    own event loop and channel, as in ratio.py."""
    floors: list[float] = []
    loads: list[Load] = []
    for _ in range(protocol.rounds):
        floors.append(
            asyncio.run(floor_load(floor_address, protocol.seconds, protocol.concurrency)).qps
        )
        loads.append(asyncio.run(target(protocol.seconds, protocol.concurrency)))
    errors = sum(load.errors for load in loads)
    first_error = next((load.first_error for load in loads if load.first_error), None)
    return Ratio(
        max(load.qps for load in loads),
        max(floors),
        sum(load.calls for load in loads),
        errors,
        first_error,
    )
