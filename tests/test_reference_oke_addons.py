"""OKE's example add-on in NEEDS_ATTENTION (oke-addon-reconciliation.txt), replayed.

The document installs WeblogicKubernetesOperator with `numOfReplicas: "0"`: valid, but the
operator's custom resources then have nobody to reconcile them, its deployments never
become ready, and OKE shows it NEEDS_ATTENTION with `addon-error` 409 "Incorrect state for
CR", no installed version and no version. Here the same install goes through gRPC, the SDK
and the CLI of a real in-process server on the simulated fleet, and the add-on is compared
field by field with the document's (OKE's names on the left, ours on the right).
"""

from __future__ import annotations

import copy
import itertools
import json
from datetime import timedelta
from importlib import resources
from typing import Any

import grpc
import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.addon_catalogue import AddonCatalogue
from clusterops_server.domain.inventory import NodePool, NodePoolState
from clusterops_server.ids import IdKind, new_id
from google.protobuf import json_format

from tests.addon_helpers import get_addon, get_work_request, next_wakeup, run_next_check, until
from tests.conftest import Stubs, seed_cluster
from tests.helpers import details_of, watch_to_end
from tests.sdk_support import sdk_client
from tests.test_cli import Run

NAME = "WeblogicKubernetesOperator"
# The document's `oci ce cluster get-addon` output (its times and etag are its own).
DOCUMENT: dict[str, Any] = {
    "data": {
        "addon-error": {
            "code": "409",
            "message": "Incorrect state for CR",
            "status": "IncorrectState",
        },
        "configurations": [
            {"key": "numOfReplicas", "value": "0"},
            {
                "key": "weblogic-operator.ContainerResources",
                "value": "{'limits': {'cpu': '500m', 'memory': '200Mi'}}",
            },
            {
                "key": "weblogic-operator-webhook.ContainerResources",
                "value": "{'limits': {'cpu': '200m', 'memory': '300Mi'}}",
            },
        ],
        "current-installed-version": "",
        "lifecycle-state": "NEEDS_ATTENTION",
        "name": "WeblogicKubernetesOperator",
        "time-created": "2025-02-26T01:41:52.020696+00:00",
        "version": None,
    },
    "etag": "5f3eef22-eb32-5c2c-774c-c7a98836a13a",
}
# OKE's name -> ours.
NAMES = {
    "addon-error": "addon_error",
    "configurations": "configurations",
    "current-installed-version": "current_installed_version",
    "lifecycle-state": "lifecycle_state",
    "name": "name",
    "time-created": "time_created",
    "version": "version",
}
CONFIGURATIONS = {c["key"]: c["value"] for c in DOCUMENT["data"]["configurations"]}


def expected() -> dict[str, Any]:
    """The document in our names: times and etags stand for what they are, and a version
    never given (OKE's null) is our empty string."""
    data = copy.deepcopy(DOCUMENT["data"])
    shaped = {NAMES[k]: v for k, v in data.items()}
    shaped["time_created"] = "<time>"
    shaped["version"] = ""
    # We list configurations by key.
    shaped["configurations"].sort(key=lambda c: c["key"])
    shaped["etag"] = "<etag>"
    return shaped


def oke_view(addon: dict[str, Any]) -> dict[str, Any]:
    """Our add-on (as JSON with every field) narrowed to the document's fields."""
    view = {ours: addon[ours] for ours in NAMES.values()}
    view["lifecycle_state"] = view["lifecycle_state"].removeprefix("ADDON_LIFECYCLE_STATE_")
    view["time_created"] = "<time>" if view["time_created"] else ""
    view["etag"] = "<etag>" if addon["etag"] else ""
    return view


def as_json(addon: ad_pb.Addon) -> dict[str, Any]:
    return json_format.MessageToDict(
        addon, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def install_request(cluster_id: str, **changes: str) -> ad_pb.InstallAddonRequest:
    values = {**CONFIGURATIONS, **changes}
    return ad_pb.InstallAddonRequest(
        cluster_id=cluster_id,
        name=NAME,
        configurations=[ad_pb.AddonConfiguration(key=k, value=v) for k, v in values.items()],
    )


async def left_creating(app: App, stubs: Stubs, cluster_id: str, name: str = NAME) -> None:
    async def judged() -> bool:
        addon = await get_addon(stubs, cluster_id, name)
        return addon.lifecycle_state != ad_pb.ADDON_LIFECYCLE_STATE_CREATING

    await until(app, judged)


async def test_the_documents_addon_needs_attention_and_an_update_to_one_replica_heals_it(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    installed_at = clock.now()
    enable = await stubs.addons.InstallAddon(install_request(cluster.id))
    await left_creating(app, stubs, cluster.id)

    addon = await get_addon(stubs, cluster.id, NAME)
    assert oke_view(as_json(addon)) == expected()

    # The reconciler checks it every few minutes, a little later each time, with the
    # install's work request following it (IN_PROGRESS, as OKE's does for 30 minutes).
    checks = [installed_at]
    for _ in range(4):
        checks.append(await run_next_check(clock))
        await next_wakeup(clock)
        again = await get_addon(stubs, cluster.id, NAME)
        assert oke_view(as_json(again)) == expected()
    gaps = [b - a for a, b in itertools.pairwise(checks)]
    assert gaps[0] == timedelta(minutes=2)
    assert all(b > a for a, b in itertools.pairwise(gaps))
    work = await get_work_request(stubs, enable.work_request.id)
    assert work.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS

    # A person fixes the configuration: the update supersedes the install's work request
    # and the add-on comes up.
    current = await get_addon(stubs, cluster.id, NAME)
    update = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(
            cluster_id=cluster.id,
            name=NAME,
            etag=current.etag,
            configurations=[ad_pb.AddonConfiguration(key="numOfReplicas", value="1")],
        )
    )
    events = await watch_to_end(stubs, update.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    healed = await get_addon(stubs, cluster.id, NAME)
    assert healed.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    assert not healed.HasField("addon_error")
    assert healed.current_installed_version == "4.2.3"
    assert healed.version == ""
    assert {c.key: c.value for c in healed.configurations} == {
        **CONFIGURATIONS,
        "numOfReplicas": "1",
    }


async def test_limits_below_what_the_addon_needs_keep_it_from_becoming_ready(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    starved = "{'limits': {'cpu': '500m', 'memory': '32Mi'}}"
    await stubs.addons.InstallAddon(
        install_request(
            cluster.id, numOfReplicas="1", **{"weblogic-operator.ContainerResources": starved}
        )
    )
    await left_creating(app, stubs, cluster.id)
    addon = await get_addon(stubs, cluster.id, NAME)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    assert (addon.addon_error.code, addon.addon_error.message, addon.addon_error.status) == (
        "409",
        "Incorrect state for CR",
        "IncorrectState",
    )
    assert addon.current_installed_version == ""


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("numOfReplicas", "-1", "numOfReplicas must be an integer from 0 to 10, not -1"),
        ("numOfReplicas", "two", "numOfReplicas must be an integer from 0 to 10"),
        ("weblogic-operator.ContainerResources", "{not json", "is not a JSON object"),
        (
            "weblogic-operator.ContainerResources",
            "{'limits': {'cpu': 'lots'}}",
            "limits.cpu 'lots' is not a Kubernetes quantity",
        ),
        (
            "weblogic-operator-webhook.ContainerResources",
            '{"limit": {"cpu": "1"}}',
            "limit is not allowed (allowed: limits, requests)",
        ),
    ],
    ids=["negative", "not-a-number", "not-json", "not-a-quantity", "unknown-field"],
)
async def test_a_value_that_breaks_its_keys_type_is_refused_before_any_work_request(
    app: App, stubs: Stubs, key: str, value: str, says: str
) -> None:
    cluster = await seed_cluster(app)
    index = list(CONFIGURATIONS).index(key)
    with pytest.raises(grpc.aio.AioRpcError) as install:
        await stubs.addons.InstallAddon(install_request(cluster.id, **{key: value}))
    assert install.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(install.value)
    assert details.fields == [f"configurations[{index}].value"]
    assert details.bad_request is not None
    description = details.bad_request.field_violations[0].description
    assert description.startswith(key)
    assert says in description

    # At update too: the add-on and its work requests stay as they were.
    await stubs.addons.InstallAddon(install_request(cluster.id, numOfReplicas="1"))
    await left_creating(app, stubs, cluster.id)
    before = await get_addon(stubs, cluster.id, NAME)
    listed = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as update:
        await stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(
                cluster_id=cluster.id,
                name=NAME,
                configurations=[ad_pb.AddonConfiguration(key=key, value=value)],
            )
        )
    assert update.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(update.value).fields == ["configurations[0].value"]
    assert await get_addon(stubs, cluster.id, NAME) == before
    after = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest())
    assert [w.id for w in after.work_requests] == [w.id for w in listed.work_requests]


async def test_a_cluster_whose_node_pools_have_no_nodes_recovers_when_nodes_are_added(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    now = clock.now()
    empty = NodePool(
        id=new_id(IdKind.NODE_POOL),
        cluster_id=cluster.id,
        compartment_id=cluster.compartment_id,
        name="scaled-to-zero",
        kubernetes_version=cluster.kubernetes_version,
        node_shape="VM.Standard.E4.Flex",
        node_count=0,
        lifecycle_state=NodePoolState.ACTIVE,
        create_time=now,
        update_time=now,
    )
    async with app.store.write() as uow:
        await uow.inventory.add_node_pool(empty, [])
        await uow.commit()
    await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    await left_creating(app, stubs, cluster.id, "CertManager")
    addon = await get_addon(stubs, cluster.id, "CertManager")
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    assert addon.addon_error.status == "IncorrectState"

    async with sdk_client(app) as client:
        pool = await client.clusters.create_node_pool(cluster.id, name="workers", node_count=1)
        await pool.wait(timeout=20)
    await run_next_check(clock)

    async def active() -> bool:
        found = await get_addon(stubs, cluster.id, "CertManager")
        return found.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE

    await until(app, active)
    assert (await get_addon(stubs, cluster.id, "CertManager")).current_installed_version


async def test_the_documents_addon_through_the_sdk_and_the_cli(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = await seed_cluster(app)
    async with sdk_client(app) as client:
        await client.addons.install(cluster.id, NAME, configurations=CONFIGURATIONS)
    run = Run(app, capsys)

    async def judged() -> bool:
        assert await run("addons", "get", cluster.id, NAME, "-o", "json") == 0
        shown = run.json()
        assert isinstance(shown, dict)
        return bool(shown["lifecycle_state"] != "ADDON_LIFECYCLE_STATE_CREATING")

    await until(app, judged)
    shown = run.json()
    assert isinstance(shown, dict)
    assert oke_view(shown) == expected()

    assert await run("addons", "get", cluster.id, NAME) == 0
    assert "lifecycle_state: NEEDS_ATTENTION" in run.out
    assert "  code: 409" in run.out
    assert "  message: Incorrect state for CR" in run.out


def test_the_catalogue_has_the_documents_keys_and_which_values_break_readiness_is_data() -> None:
    catalogue = AddonCatalogue.load()
    option = catalogue.get(NAME)
    assert option is not None
    for version in option.versions:
        assert [c.key for c in version.configurations] == list(CONFIGURATIONS)
        assert version.shortfalls(CONFIGURATIONS)
        assert not version.shortfalls({**CONFIGURATIONS, "numOfReplicas": "1"})

    # The same rule on another add-on is a line of data, not code.
    data = json.loads((resources.files("clusterops_server") / "data" / "addons.json").read_text())
    dashboard = next(a for a in data["addons"] if a["name"] == "KubernetesDashboard")
    replicas = next(c for c in dashboard["configurations"] if c["key"] == "numOfReplicas")
    before = AddonCatalogue.from_json(data).get("KubernetesDashboard")
    assert before is not None
    assert not before.versions[0].shortfalls({"numOfReplicas": "0"})
    replicas["needs"] = [{"minimum": "2", "reason": "it runs highly available"}]
    changed = AddonCatalogue.from_json(data).get("KubernetesDashboard")
    assert changed is not None
    assert changed.versions[0].shortfalls({"numOfReplicas": "1"}) == [
        "numOfReplicas is below 2: it runs highly available"
    ]


async def test_the_catalogue_tells_each_keys_type_and_what_the_addon_needs(stubs: Stubs) -> None:
    listed = await stubs.addons.ListAddonOptions(ad_pb.ListAddonOptionsRequest(addon_name=NAME))
    (option,) = listed.addon_options
    keys = {c.key: c for c in option.versions[-1].configurations}
    replicas = keys["numOfReplicas"]
    assert (replicas.value_type, replicas.constraint) == ("integer", "an integer from 0 to 10")
    assert replicas.needs == [
        "at least 1: its Domain custom resources need an operator replica to reconcile them"
    ]
    resources_key = keys["weblogic-operator.ContainerResources"]
    assert resources_key.value_type == "json"
    assert [n.split(":")[0] for n in resources_key.needs] == [
        "limits.cpu at least 100m",
        "limits.memory at least 128Mi",
    ]
