"""SimulatorService: protobuf in, validation, a call on the simulator's controls, protobuf out."""

from __future__ import annotations

import math
from typing import Any

from clusterops.v1 import simulator_pb2 as pb
from clusterops.v1 import simulator_pb2_grpc as pb_grpc

from clusterops_server.domain.errors import one_of
from clusterops_server.ids import IdKind
from clusterops_server.providers.simulated import ACTIONS
from clusterops_server.providers.simulated_store import Fault
from clusterops_server.services.simulator import AddonBreakage, SimulatorControls, StepTimes
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator

BREAKAGE = EnumMap(pb.AddonBreakage, AddonBreakage, "ADDON_BREAKAGE_")
MAX_TIMES = 1_000_000
MAX_STEP_SECONDS = 86_400.0


def fault_to_proto(fault: Fault) -> pb.Fault:
    return pb.Fault(
        id=fault.id,
        action=fault.action,
        target=fault.target,
        remaining=fault.remaining,
        message=fault.message,
        create_time=timestamp(fault.created_at),
    )


def _step_times(times: StepTimes) -> dict[str, Any]:
    return {
        "default_seconds": times.default_seconds,
        "step_times": [
            pb.StepTime(action=t.action, seconds=t.seconds, overridden=t.overridden)
            for t in times.step_times
        ],
    }


def _action(check: Validator, field: str, value: str, *, required: bool) -> str:
    if not value:
        if required:
            check.fail(field, f"is required: one of {one_of(list(ACTIONS))}")
    elif value not in ACTIONS:
        check.fail(
            field, f"{value[:80]!r} is not a simulated action; use one of {one_of(list(ACTIONS))}"
        )
    return value


@servicer
class SimulatorServicer(pb_grpc.SimulatorServiceServicer):
    def __init__(self, controls: SimulatorControls) -> None:
        self.controls = controls

    async def AddFault(  # noqa: N802 (gRPC method names)
        self, request: pb.AddFaultRequest, context: Any
    ) -> pb.AddFaultResponse:
        check = Validator()
        action = _action(check, "action", request.action, required=True)
        target = check.text("target", request.target, limit=64)
        if request.times < -1 or request.times > MAX_TIMES:
            check.fail("times", f"must be -1 (every time), 0 (once) or up to {MAX_TIMES}")
        message = check.text("message", request.message)
        check.check()
        fault = await self.controls.add_fault(action, target, request.times or 1, message)
        return pb.AddFaultResponse(fault=fault_to_proto(fault))

    async def ListFaults(  # noqa: N802
        self, request: pb.ListFaultsRequest, context: Any
    ) -> pb.ListFaultsResponse:
        faults = await self.controls.faults()
        return pb.ListFaultsResponse(faults=[fault_to_proto(f) for f in faults])

    async def ClearFaults(  # noqa: N802
        self, request: pb.ClearFaultsRequest, context: Any
    ) -> pb.ClearFaultsResponse:
        return pb.ClearFaultsResponse(cleared_count=await self.controls.clear_faults())

    async def GetStepTimes(  # noqa: N802
        self, request: pb.GetStepTimesRequest, context: Any
    ) -> pb.GetStepTimesResponse:
        return pb.GetStepTimesResponse(**_step_times(self.controls.step_times()))

    async def SetStepTime(  # noqa: N802
        self, request: pb.SetStepTimeRequest, context: Any
    ) -> pb.SetStepTimeResponse:
        check = Validator()
        action = _action(check, "action", request.action, required=False)
        seconds: float | None = request.seconds
        if request.reset:
            if not request.action:
                check.fail("reset", "needs an action: the default has no default to go back to")
            if request.seconds != 0:
                check.fail("seconds", "must be 0 (unset) with reset")
            seconds = None
        elif not (math.isfinite(request.seconds) and 0 <= request.seconds <= MAX_STEP_SECONDS):
            check.fail("seconds", f"must be a number from 0 to {MAX_STEP_SECONDS:g}")
        check.check()
        return pb.SetStepTimeResponse(**_step_times(self.controls.set_step_time(action, seconds)))

    async def BreakAddon(  # noqa: N802
        self, request: pb.BreakAddonRequest, context: Any
    ) -> pb.BreakAddonResponse:
        check = Validator()
        cluster_id = check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER)
        name = check.text("name", request.name, required=True, limit=40)
        breakage = check.enum("breakage", request.breakage, BREAKAGE)
        message = check.text("message", request.message)
        if breakage is AddonBreakage.PODS_NOT_READY and not message:
            check.fail(
                "message", "is required with ADDON_BREAKAGE_PODS_NOT_READY: why the pods fail"
            )
        elif breakage is not AddonBreakage.PODS_NOT_READY and message:
            check.fail("message", "is only for ADDON_BREAKAGE_PODS_NOT_READY")
        until = check.timestamp("until", request.until) if request.HasField("until") else None
        if until is not None and breakage is AddonBreakage.DEPLOYMENT_DELETED:
            check.fail(
                "until", "is not for ADDON_BREAKAGE_DEPLOYMENT_DELETED: a repair restores it"
            )
        check.check()
        assert breakage is not None
        status = await self.controls.break_addon(
            cluster_id, name, breakage, message=message, until=until
        )
        return pb.BreakAddonResponse(drift=list(status.drift), not_ready=list(status.not_ready))
