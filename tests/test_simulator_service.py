"""SimulatorService over real gRPC: fault injection, step times and broken add-ons without
SQL, served only by a simulated server, to tenancy managers only, bad input refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import simulator_pb2 as pb
from clusterops.v1 import simulator_pb2_grpc as pb_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import SIMULATOR_SERVICE_NAME, App
from clusterops_server.auth.tokens import TokenStore
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import ACTIONS
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.addon_helpers import install
from tests.conftest import AppFactory, Stubs, seed_cluster
from tests.helpers import details_of, watch_to_end
from tests.test_simulator_store import NothingProvider


@pytest.fixture
async def sim(stubs: Stubs) -> pb_grpc.SimulatorServiceAsyncStub:
    return pb_grpc.SimulatorServiceStub(stubs.channel)


async def refused(
    call: object, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
) -> list[str]:
    """Await the call, which must fail with `code`; the fields its BadRequest names."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    details = details_of(error.value)
    assert details.code == code, details
    return details.fields


async def listed_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    assert isinstance(reply, reflection_pb2.ServerReflectionResponse)
    return {s.name for s in reply.list_services_response.service}


async def test_an_injected_fault_fails_the_work_and_is_listed_used_up_then_cleared(
    app: App, stubs: Stubs, sim: pb_grpc.SimulatorServiceAsyncStub
) -> None:
    cluster = await seed_cluster(app)
    added = await sim.AddFault(
        pb.AddFaultRequest(action="provision_node", target=cluster.id, message="rack on fire")
    )
    assert (added.fault.action, added.fault.target, added.fault.remaining) == (
        "provision_node",
        cluster.id,
        1,
    )
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    errors = await stubs.work_requests.ListWorkRequestErrors(
        wr_pb.ListWorkRequestErrorsRequest(work_request_id=created.work_request.id)
    )
    assert any("rack on fire" in e.message for e in errors.errors)

    forever = await sim.AddFault(pb.AddFaultRequest(action="upgrade:PostCheck", times=-1))
    assert (forever.fault.target, forever.fault.remaining) == ("*", -1)
    assert forever.fault.message == "simulated failure of upgrade:PostCheck"
    listed = (await sim.ListFaults(pb.ListFaultsRequest())).faults
    assert [(f.id, f.remaining) for f in listed] == [(added.fault.id, 0), (forever.fault.id, -1)]
    assert (await sim.ClearFaults(pb.ClearFaultsRequest())).cleared_count == 2
    assert list((await sim.ListFaults(pb.ListFaultsRequest())).faults) == []
    assert (await sim.ClearFaults(pb.ClearFaultsRequest())).cleared_count == 0


async def test_step_times_are_read_set_per_action_and_reset(
    app: App, stubs: Stubs, sim: pb_grpc.SimulatorServiceAsyncStub, clock: FakeClock
) -> None:
    times = await sim.GetStepTimes(pb.GetStepTimesRequest())
    assert times.default_seconds == 0
    assert [t.action for t in times.step_times] == list(ACTIONS)
    assert not any(t.overridden for t in times.step_times)

    after = await sim.SetStepTime(pb.SetStepTimeRequest(action="provision_node", seconds=30))
    by_action = {t.action: t for t in after.step_times}
    assert (by_action["provision_node"].seconds, by_action["provision_node"].overridden) == (
        30,
        True,
    )
    # The next node takes 30 seconds of the (fake) clock: not done at 29, done at 30.
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    await clock.wait_for_sleeper_until(clock.now() + timedelta(seconds=30))
    clock.advance(29)
    get = wr_pb.GetWorkRequestRequest(work_request_id=created.work_request.id)
    assert (await stubs.work_requests.GetWorkRequest(get)).work_request.status != (
        wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    )
    clock.advance(1)
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED

    default = await sim.SetStepTime(pb.SetStepTimeRequest(seconds=2.5))
    assert default.default_seconds == 2.5
    reset = await sim.SetStepTime(pb.SetStepTimeRequest(action="provision_node", reset=True))
    assert {t.action: (t.seconds, t.overridden) for t in reset.step_times}["provision_node"] == (
        2.5,
        False,
    )


async def test_breaking_an_addon_shows_as_drift_or_unready_pods(
    app: App, stubs: Stubs, sim: pb_grpc.SimulatorServiceAsyncStub, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    deleted = await sim.BreakAddon(
        pb.BreakAddonRequest(
            cluster_id=cluster.id,
            name="CertManager",
            breakage=pb.ADDON_BREAKAGE_DEPLOYMENT_DELETED,
        )
    )
    assert list(deleted.drift) == ["deployment/cert-manager deleted"]
    until = Timestamp()
    until.FromDatetime(clock.now() + timedelta(hours=1))
    unready = await sim.BreakAddon(
        pb.BreakAddonRequest(
            cluster_id=cluster.id,
            name="CertManager",
            breakage=pb.ADDON_BREAKAGE_PODS_NOT_READY,
            message="ImagePullBackOff",
            until=until,
        )
    )
    assert list(unready.not_ready) == ["ImagePullBackOff"]
    stuck = await sim.BreakAddon(
        pb.BreakAddonRequest(
            cluster_id=cluster.id, name="CertManager", breakage=pb.ADDON_BREAKAGE_DEPLOYMENT_STUCK
        )
    )
    assert list(stuck.drift) == ["deployment/cert-manager deleted"]
    # The service still shows it ACTIVE: nothing has looked yet.
    addon = await stubs.addons.GetAddon(
        ad_pb.GetAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    assert addon.addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE

    other = await seed_cluster(app)
    fields = await refused(
        sim.BreakAddon(
            pb.BreakAddonRequest(
                cluster_id=other.id,
                name="CertManager",
                breakage=pb.ADDON_BREAKAGE_DEPLOYMENT_DELETED,
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert fields == []


async def test_bad_requests_are_invalid_argument_naming_every_field(
    app: App, sim: pb_grpc.SimulatorServiceAsyncStub
) -> None:
    assert await refused(sim.AddFault(pb.AddFaultRequest())) == ["action"]
    assert await refused(
        sim.AddFault(
            pb.AddFaultRequest(
                action="reboot_everything", target="x" * 65, times=-2, message="\x00"
            )
        )
    ) == ["action", "target", "times", "message"]
    assert await refused(sim.AddFault(pb.AddFaultRequest(action="delete_node", times=10**7))) == [
        "times"
    ]
    assert await refused(sim.SetStepTime(pb.SetStepTimeRequest(action="nap", seconds=-1))) == [
        "action",
        "seconds",
    ]
    assert await refused(sim.SetStepTime(pb.SetStepTimeRequest(seconds=float("nan")))) == [
        "seconds"
    ]
    assert await refused(sim.SetStepTime(pb.SetStepTimeRequest(seconds=86_401))) == ["seconds"]
    assert await refused(sim.SetStepTime(pb.SetStepTimeRequest(reset=True, seconds=1))) == [
        "reset",
        "seconds",
    ]
    assert await refused(sim.BreakAddon(pb.BreakAddonRequest())) == [
        "cluster_id",
        "name",
        "breakage",
    ]
    assert await refused(
        sim.BreakAddon(
            pb.BreakAddonRequest(
                cluster_id="cls-nope", name="CertManager", breakage=pb.ADDON_BREAKAGE_PODS_NOT_READY
            )
        )
    ) == ["cluster_id", "message"]
    until = Timestamp(seconds=1)
    assert await refused(
        sim.BreakAddon(
            pb.BreakAddonRequest(
                cluster_id="cls-" + "0" * 20,
                name="CertManager",
                breakage=pb.ADDON_BREAKAGE_DEPLOYMENT_DELETED,
                message="why",
                until=until,
            )
        )
    ) == ["message", "until"]
    assert await refused(
        sim.BreakAddon(
            pb.BreakAddonRequest(
                cluster_id="cls-" + "0" * 20,
                name="CertManager",
                breakage=pb.AddonBreakage.ValueType(99),
                until=Timestamp(seconds=-(10**12)),
            )
        )
    ) == ["breakage", "until"]
    # Nothing was injected by any of them.
    assert list((await sim.ListFaults(pb.ListFaultsRequest())).faults) == []


async def test_a_server_with_another_provider_has_no_simulator_service(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=NothingProvider)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        sim = pb_grpc.SimulatorServiceStub(channel)
        for call in (
            sim.ListFaults(pb.ListFaultsRequest()),
            sim.AddFault(pb.AddFaultRequest(action="provision_node")),
            sim.SetStepTime(pb.SetStepTimeRequest(seconds=1)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert SIMULATOR_SERVICE_NAME not in await listed_services(channel)


async def test_a_simulated_server_lists_the_simulator_service(app: App, stubs: Stubs) -> None:
    assert SIMULATOR_SERVICE_NAME in await listed_services(stubs.channel)


AUTH = {
    "principals": [
        {"name": "root", "groups": ["Operators"], "token": "root-token"},
        {"name": "alice", "groups": ["DevAdmins"], "token": "alice-token"},
        {"name": "tina", "groups": ["TenancyReaders"], "token": "tina-token"},
    ],
    "policies": [
        "allow group Operators to manage all-resources in tenancy",
        "allow group DevAdmins to manage all-resources in compartment dev",
        "allow group TenancyReaders to read all-resources in tenancy",
    ],
}


@pytest.fixture
async def guarded(make_app: AppFactory) -> AsyncIterator[pb_grpc.SimulatorServiceAsyncStub]:
    app = await make_app(tokens=TokenStore.from_json(AUTH))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield pb_grpc.SimulatorServiceStub(channel)


@pytest.mark.parametrize("who", ["alice", "tina"])
async def test_only_a_tenancy_manager_may_use_the_simulator(
    guarded: pb_grpc.SimulatorServiceAsyncStub, who: str
) -> None:
    as_root = (("authorization", "Bearer root-token"),)
    as_other = (("authorization", f"Bearer {who}-token"),)
    await guarded.AddFault(pb.AddFaultRequest(action="delete_node"), metadata=as_root)
    for call in (
        guarded.ListFaults(pb.ListFaultsRequest(), metadata=as_other),
        guarded.AddFault(pb.AddFaultRequest(action="delete_node"), metadata=as_other),
        guarded.ClearFaults(pb.ClearFaultsRequest(), metadata=as_other),
        guarded.GetStepTimes(pb.GetStepTimesRequest(), metadata=as_other),
        guarded.SetStepTime(pb.SetStepTimeRequest(seconds=1), metadata=as_other),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        details = details_of(error.value)
        assert details.code == grpc.StatusCode.PERMISSION_DENIED
        assert "manage all-resources in tenancy" in details.message
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await guarded.ListFaults(pb.ListFaultsRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await guarded.ListFaults(pb.ListFaultsRequest(), metadata=as_root)
    assert len(listed.faults) == 1
