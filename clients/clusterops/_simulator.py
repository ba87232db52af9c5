"""`client.simulator`: the simulated provider's controls on a demo or test server.

Only a server that runs the simulated provider has them (any other raises Unimplemented),
and only a caller allowed to `manage all-resources in tenancy` may use them.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from clusterops._enums import EnumArg, enum_value
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._sync import Facade, blocking
from clusterops._transport import Transport
from clusterops.v1 import simulator_pb2 as pb
from clusterops.v1 import simulator_pb2_grpc as pb_grpc


class AsyncSimulator:
    """Faults, step times and broken add-ons of a simulated fleet."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._stub = pb_grpc.SimulatorServiceStub(transport.channel)

    async def add_fault(
        self,
        action: str,
        target: str = "",
        *,
        times: int = 1,
        message: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Fault:
        """Make `action` (e.g. "provision_node", "upgrade:PostCheck") fail for `target` (a
        node, node pool or cluster id, "<cluster id>/<add-on>", or any if empty) the next
        `times` times (-1: every time)."""
        response = await self._transport.unary(
            self._stub.AddFault,
            pb.AddFaultRequest(action=action, target=target, times=times, message=message),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.fault

    async def list_faults(
        self, *, timeout: Timeout = DEFAULT, metadata: Metadata = (), retry: Retry = DEFAULT
    ) -> list[pb.Fault]:
        """Every fault not cleared (used up ones too), oldest first."""
        response = await self._transport.unary(
            self._stub.ListFaults,
            pb.ListFaultsRequest(),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return list(response.faults)

    async def clear_faults(
        self, *, timeout: Timeout = DEFAULT, metadata: Metadata = (), retry: Retry = DEFAULT
    ) -> int:
        """Forget every fault; how many there were."""
        response = await self._transport.unary(
            self._stub.ClearFaults,
            pb.ClearFaultsRequest(),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.cleared_count

    async def step_times(
        self, *, timeout: Timeout = DEFAULT, metadata: Metadata = (), retry: Retry = DEFAULT
    ) -> pb.GetStepTimesResponse:
        """The default step time and every simulated action's time."""
        return await self._transport.unary(
            self._stub.GetStepTimes,
            pb.GetStepTimesRequest(),
            CallOptions(timeout, metadata, retry),
            read=True,
        )

    async def set_step_time(
        self,
        seconds: float | None,
        action: str = "",
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.SetStepTimeResponse:
        """From its next run `action` takes `seconds` (no action: the default time; None:
        the action takes the default again). Kept by the serving process only."""
        request = (
            pb.SetStepTimeRequest(action=action, reset=True)
            if seconds is None
            else pb.SetStepTimeRequest(action=action, seconds=seconds)
        )
        return await self._transport.unary(
            self._stub.SetStepTime, request, CallOptions(timeout, metadata, retry), read=False
        )

    async def break_addon(
        self,
        cluster_id: str,
        name: str,
        breakage: EnumArg = "DEPLOYMENT_DELETED",
        *,
        message: str = "",
        until: datetime | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.BreakAddonResponse:
        """Break an add-on behind the service's back: DEPLOYMENT_DELETED (a repair restores
        it), DEPLOYMENT_STUCK (not restorable until `until`, or ever) or PODS_NOT_READY
        (with `message`, until `until` or for good). Returns what a look finds now."""
        request = pb.BreakAddonRequest(
            cluster_id=cluster_id,
            name=name,
            breakage=enum_value(pb.AddonBreakage, breakage, argument="breakage"),
            message=message,
        )
        if until is not None:
            if until.tzinfo is None:
                raise ValueError("until: pass an aware datetime (e.g. with tzinfo=UTC)")
            stamp = Timestamp()
            stamp.FromDatetime(until)
            request.until.CopyFrom(stamp)
        return await self._transport.unary(
            self._stub.BreakAddon, request, CallOptions(timeout, metadata, retry), read=False
        )


class Simulator(Facade[AsyncSimulator]):
    """Faults, step times and broken add-ons of a simulated fleet."""

    add_fault = blocking(AsyncSimulator.add_fault)
    list_faults = blocking(AsyncSimulator.list_faults)
    clear_faults = blocking(AsyncSimulator.clear_faults)
    step_times = blocking(AsyncSimulator.step_times)
    set_step_time = blocking(AsyncSimulator.set_step_time)
    break_addon = blocking(AsyncSimulator.break_addon)
