"""SDK against a real in-process server: every verb of client.addons, its operation handles and
the typed exceptions with their details."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from clusterops import (
    AlreadyExists,
    AsyncClient,
    Conflict,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationFailed,
    is_terminal,
)
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App

from tests.addon_helpers import until
from tests.conftest import seed_cluster, simulator
from tests.sdk_support import CallCounter, sdk_client

ACTIVE = ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE

SMALL = '{"limits": {"cpu": "100m", "memory": "128Mi"}}'


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncClient]:
    async with sdk_client(app) as connected:
        yield connected


def configured(addon: ad_pb.Addon) -> dict[str, str]:
    return {c.key: c.value for c in addon.configurations}


async def reconciled(app: App, client: AsyncClient, cluster_id: str, name: str) -> None:
    """Wait for the reconciliation a successful update starts at once: until it ends it
    holds the add-on, and another operation on it would raise Conflict."""

    async def finished() -> bool:
        addon = await client.addons.get(cluster_id, name)
        latest = await client.work_requests.get(addon.work_request_id)
        reconciling = wr_pb.WORK_REQUEST_OPERATION_TYPE_RECONCILE_ADDON
        return latest.operation_type == reconciling and is_terminal(latest)

    await until(app, finished)


async def test_install_returns_a_handle_whose_result_is_the_active_addon(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    operation = await client.addons.install(
        cluster.id, "CertManager", configurations={"numOfReplicas": "2"}
    )
    assert operation.resource.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_CREATING
    assert operation.resource.version == ""  # follows the newest ACTIVE version
    assert operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_ENABLE_ADDON
    assert operation.resource.work_request_id == operation.id

    addon = await operation.result(timeout=20)
    assert addon.lifecycle_state == ACTIVE
    assert addon.current_installed_version == "v1.14.5"
    assert configured(addon) == {"numOfReplicas": "2"}
    assert await client.addons.get(cluster.id, "CertManager") == addon
    with pytest.raises(AlreadyExists):
        await client.addons.install(cluster.id, "CertManager")


async def test_a_failed_install_raises_operation_failed_and_the_addon_carries_its_error(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("apply_addon", cluster.id, message="image pull failed")
    operation = await client.addons.install(cluster.id, "CertManager")
    with pytest.raises(OperationFailed, match="image pull failed"):
        await operation.result(timeout=20)
    addon = await client.addons.get(cluster.id, "CertManager")
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_FAILED
    assert (addon.addon_error.code, addon.addon_error.message) == ("500", "image pull failed")


async def test_update_with_the_current_etag_changes_the_version_and_merges_configuration(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await (
        await client.addons.install(
            cluster.id, "CertManager", version="v1.13.3", configurations={"numOfReplicas": "2"}
        )
    ).result(timeout=20)
    current = await client.addons.get(cluster.id, "CertManager")

    operation = await client.addons.update(
        cluster.id,
        "CertManager",
        etag=current.etag,
        version="v1.14.5",
        configurations={"cert-manager.ContainerResources": SMALL},
    )
    assert operation.resource.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_UPDATING
    assert operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_UPDATE_ADDON
    addon = await operation.result(timeout=20)
    assert addon.lifecycle_state == ACTIVE
    assert (addon.version, addon.current_installed_version) == ("v1.14.5", "v1.14.5")
    assert configured(addon) == {
        "numOfReplicas": "2",
        "cert-manager.ContainerResources": SMALL,
    }

    await reconciled(app, client, cluster.id, "CertManager")
    # The etag read before the update is stale now.
    with pytest.raises(EtagMismatch) as stale:
        await client.addons.update(cluster.id, "CertManager", etag=current.etag, version="v1.13.3")
    assert stale.value.reason == "ETAG_MISMATCH"
    assert stale.value.current_etag == (await client.addons.get(cluster.id, "CertManager")).etag

    replaced = await (
        await client.addons.update(
            cluster.id,
            "CertManager",
            follow_latest=True,
            configurations={"numOfReplicas": "3"},
            replace_configurations=True,
        )
    ).result(timeout=20)
    assert replaced.version == ""
    assert configured(replaced) == {"numOfReplicas": "3"}


async def test_an_update_that_changes_nothing_follows_the_reconciliation_it_starts(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await (await client.addons.install(cluster.id, "CertManager")).result(timeout=20)
    operation = await client.addons.update(cluster.id, "CertManager")
    assert (
        operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_RECONCILE_ADDON
    )
    addon = await operation.result(timeout=20)
    assert addon.lifecycle_state == ACTIVE
    assert operation.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_update_of_an_addon_being_installed_raises_conflict_naming_the_install(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await app.engine.stop()  # keep the install in flight
    installing = await client.addons.install(cluster.id, "CertManager")
    with pytest.raises(Conflict) as busy:
        await client.addons.update(cluster.id, "CertManager", version="v1.13.3")
    assert busy.value.blocking_work_request_id == installing.id
    assert busy.value.resource_id == f"{cluster.id}/CertManager"


async def test_disable_returns_a_handle_whose_result_is_the_deleted_addon(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    installed = await (await client.addons.install(cluster.id, "CertManager")).result(timeout=20)

    operation = await client.addons.disable(
        cluster.id, "CertManager", remove_existing=True, etag=installed.etag
    )
    assert operation.resource.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_DELETING
    assert operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_DISABLE_ADDON
    disabled = await operation.result(timeout=20)
    assert disabled.name == "CertManager"
    assert disabled.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_DELETED
    assert disabled.current_installed_version == ""  # removed from the cluster
    with pytest.raises(NotFound) as gone:
        await client.addons.get(cluster.id, "CertManager")
    assert gone.value.resource_name == f"{cluster.id}/CertManager"
    assert [a async for a in client.addons.list(cluster.id)] == []
    assert [a async for a in client.addons.list(cluster.id, lifecycle_states=["DELETED"])] == [
        disabled
    ]

    # Disabled, it can be installed again.
    again = await (await client.addons.install(cluster.id, "CertManager")).result(timeout=20)
    assert again.lifecycle_state == ACTIVE


async def test_disabling_an_essential_addon_with_removal_raises_failed_precondition(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await (await client.addons.install(cluster.id, "CoreDNS")).result(timeout=20)
    with pytest.raises(FailedPrecondition) as refused:
        await client.addons.disable(cluster.id, "CoreDNS", remove_existing=True)
    assert refused.value.precondition_violations[0].type == "ADDON_ESSENTIAL"
    # Without removal the service only stops managing it; what it installed stays.
    kept = await (await client.addons.disable(cluster.id, "CoreDNS")).result(timeout=20)
    assert kept.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_DELETED
    assert kept.current_installed_version != ""


async def test_list_pages_by_name_and_filters_by_state(app: App) -> None:
    cluster = await seed_cluster(app)
    counter = CallCounter()
    async with sdk_client(app, interceptors=[counter]) as client:
        for name in ("KubernetesDashboard", "CertManager", "CoreDNS"):
            await (await client.addons.install(cluster.id, name)).wait(timeout=20)
        await simulator(app).inject_fault("apply_addon", cluster.id)
        await (await client.addons.install(cluster.id, "FlannelOverlay")).wait(timeout=20)

        before = counter.calls["ListAddons"]
        names = [a.name async for a in client.addons.list(cluster.id, page_size=3)]
        assert names == ["CertManager", "CoreDNS", "FlannelOverlay", "KubernetesDashboard"]
        assert counter.calls["ListAddons"] - before == 2
        pages = [page async for page in client.addons.list(cluster.id, page_size=2).pages()]
        assert [[a.name for a in page.items] for page in pages] == [
            ["CertManager", "CoreDNS"],
            ["FlannelOverlay", "KubernetesDashboard"],
        ]
        failed = client.addons.list(cluster.id, lifecycle_states=["failed"])
        assert [a.name async for a in failed] == ["FlannelOverlay"]
        healthy = client.addons.list(cluster.id, lifecycle_states=["ACTIVE", "NEEDS_ATTENTION"])
        assert [a.name async for a in healthy] == ["CertManager", "CoreDNS", "KubernetesDashboard"]
        with pytest.raises(ValueError, match="lifecycle_states: 'BROKEN' is not one of CREATING"):
            client.addons.list(cluster.id, lifecycle_states=["BROKEN"])


async def test_list_options_filters_by_kubernetes_version_and_name_and_pages(
    app: App,
) -> None:
    counter = CallCounter()
    async with sdk_client(app, interceptors=[counter]) as client:
        everything = [o async for o in client.addons.list_options()]
        names = [o.name for o in everything]
        assert names == sorted(names)
        assert {"CertManager", "CoreDNS", "ClusterAutoscaler"} <= set(names)
        before = counter.calls["ListAddonOptions"]
        paged = [o async for o in client.addons.list_options(page_size=3)]
        assert paged == everything
        assert counter.calls["ListAddonOptions"] - before == -(-len(everything) // 3)

        (certs,) = [
            o
            async for o in client.addons.list_options(
                kubernetes_version="v1.27.16", addon_name="CertManager"
            )
        ]
        assert [v.version_number for v in certs.versions] == ["v1.12.3", "v1.13.3", "v1.14.5"]
        assert certs.versions[0].status == ad_pb.ADDON_VERSION_STATUS_RECALLED
        newer = [o async for o in client.addons.list_options(kubernetes_version="v1.30")]
        assert all("v1.30" in v.kubernetes_versions for o in newer for v in o.versions)

        with pytest.raises(InvalidArgument) as bad:
            [o async for o in client.addons.list_options(kubernetes_version="1.29", page_size=-1)]
        assert [v.field for v in bad.value.field_violations] == ["kubernetes_version", "page_size"]


@pytest.mark.parametrize(
    ("name", "version", "configurations", "field", "words"),
    [
        ("CertManagr", "", {}, "name", "not an add-on"),
        ("CertManager", "v9.9.9", {}, "version", "has no version"),
        ("CertManager", "v1.12.3", {}, "version", "RECALLED"),
        (
            "CertManager",
            "",
            {"numOfReplicas": "2", "replicas": "1"},
            "configurations[1].key",
            "not a configuration key",
        ),
        ("ClusterAutoscaler", "", {}, "configurations", "requires nodes"),
    ],
    ids=["name", "version", "recalled", "key", "required-key"],
)
async def test_install_with_a_bad_name_version_or_key_raises_invalid_argument_naming_it(
    app: App,
    client: AsyncClient,
    name: str,
    version: str,
    configurations: dict[str, str],
    field: str,
    words: str,
) -> None:
    cluster = await seed_cluster(app, version="v1.28.13")
    with pytest.raises(InvalidArgument) as bad:
        await client.addons.install(
            cluster.id, name, version=version, configurations=configurations
        )
    (violation,) = bad.value.field_violations
    assert violation.field == field
    assert words in violation.description or words in bad.value.message
    assert [a async for a in client.addons.list(cluster.id)] == []


async def test_a_malformed_request_names_every_bad_field_at_once(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await client.addons.install("nope", "", configurations={"": "1"}, request_id="bad id!")
    assert [v.field for v in bad.value.field_violations] == [
        "cluster_id",
        "name",
        "configurations[0].key",
        "request_id",
    ]
    with pytest.raises(InvalidArgument) as both:
        await client.addons.update(
            "cls-00000000000000000000", "CertManager", version="v1.13.3", follow_latest=True
        )
    assert [v.field for v in both.value.field_violations] == ["follow_latest"]


async def test_a_version_that_does_not_run_on_the_cluster_raises_failed_precondition(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app, version="v1.27.16")
    with pytest.raises(FailedPrecondition) as refused:
        await client.addons.install(cluster.id, "CertManager", version="v1.15.1")
    assert refused.value.precondition_violations[0].type == "ADDON_VERSION_UNSUPPORTED"
    assert "does not support Kubernetes v1.27" in refused.value.message
