"""AddonService over gRPC: install, read, update, disable, and the catalogue of options."""

from __future__ import annotations

import json

import grpc
import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.addon_helpers import get_addon, get_work_request, install, logs_of
from tests.conftest import Stubs, seed_cluster, simulator
from tests.helpers import details_of, watch_to_end
from tests.test_grpcurl import grpcurl

ACTIVE = ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE


async def test_install_returns_creating_and_its_work_request_then_goes_active(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    response = await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(
            cluster_id=cluster.id,
            name="CertManager",
            configurations=[ad_pb.AddonConfiguration(key="numOfReplicas", value="2")],
        )
    )
    assert response.addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_CREATING
    assert response.addon.version == ""  # follows the newest ACTIVE version
    assert response.addon.current_installed_version == ""
    wr = response.work_request
    assert wr.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_ENABLE_ADDON
    assert wr.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED
    assert response.addon.work_request_id == wr.id
    assert {r.identifier for r in wr.resources} == {f"{cluster.id}/CertManager", cluster.id}

    events = await watch_to_end(stubs, wr.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ACTIVE
    assert addon.current_installed_version == "v1.14.5"
    assert [(c.key, c.value) for c in addon.configurations] == [("numOfReplicas", "2")]
    assert not addon.HasField("addon_error")
    on_cluster = await simulator(app).addon_on_cluster(cluster.id, "CertManager")
    assert on_cluster is not None
    assert on_cluster.version == "v1.14.5"
    assert on_cluster.configurations["numOfReplicas"] == "2"
    # Defaults fill in what was not given.
    assert on_cluster.configurations["cert-manager.ContainerResources"] == ""


async def test_install_of_a_named_deprecated_version_installs_it(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await install(stubs, cluster.id, version="v1.13.3")
    addon = await get_addon(stubs, cluster.id)
    assert (addon.version, addon.current_installed_version) == ("v1.13.3", "v1.13.3")


@pytest.mark.parametrize(
    ("name", "version", "keys", "field", "words"),
    [
        ("CertManagr", "", ["numOfReplicas"], "name", "not an add-on"),
        ("CertManager", "v9.9.9", [], "version", "has no version"),
        ("CertManager", "", ["replicas"], "configurations[0].key", "not a configuration key"),
        ("ClusterAutoscaler", "", [], "configurations", "requires nodes"),
    ],
)
async def test_install_with_a_bad_name_version_or_key_is_invalid_argument(
    app: App, stubs: Stubs, name: str, version: str, keys: list[str], field: str, words: str
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(
                cluster_id=cluster.id,
                name=name,
                version=version,
                configurations=[ad_pb.AddonConfiguration(key=k, value="1") for k in keys],
            )
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == [field]
    assert details.bad_request is not None
    assert words in details.bad_request.field_violations[0].description


async def test_install_reports_every_bad_key_and_malformed_field_at_once(
    app: App, stubs: Stubs
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(
                cluster_id="nope",
                name="",
                configurations=[
                    ad_pb.AddonConfiguration(key="a", value="1"),
                    ad_pb.AddonConfiguration(key="a", value="2"),
                    ad_pb.AddonConfiguration(key="", value="3"),
                ],
            )
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == [
        "cluster_id",
        "name",
        "configurations[1].key",
        "configurations[2].key",
    ]


async def test_a_recalled_version_is_refused_with_the_reason(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app, version="v1.28.13")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.12.3")
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == ["version"]
    assert "RECALLED" in details.message
    assert "stops renewing" in details.message


async def test_a_version_that_does_not_support_the_cluster_is_refused(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app, version="v1.27.16")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.15.1")
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.precondition is not None
    assert details.precondition.violations[0].type == "ADDON_VERSION_UNSUPPORTED"
    assert "does not support Kubernetes v1.27" in details.message
    assert "v1.29, v1.30, v1.31" in details.message


async def test_an_addon_installed_by_hand_is_refused_unless_overridden(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).install_addon_by_hand(cluster.id, "CertManager", "v1.13.3")
    request = ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(request)
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.precondition is not None
    assert details.precondition.violations[0].type == "ADDON_INSTALLED_BY_HAND"
    assert "override_existing" in details.message

    await install(stubs, cluster.id, override_existing=True)
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ACTIVE
    on_cluster = await simulator(app).addon_on_cluster(cluster.id, "CertManager")
    assert on_cluster is not None
    assert (on_cluster.managed, on_cluster.version) == (True, "v1.14.5")


async def test_installing_twice_is_already_exists(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
        )
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_install_retried_with_its_request_id_returns_the_first_result(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    request = ad_pb.InstallAddonRequest(
        cluster_id=cluster.id, name="CertManager", request_id="install-1"
    )
    first = await stubs.addons.InstallAddon(request)
    again = await stubs.addons.InstallAddon(request)
    assert again.work_request.id == first.work_request.id


async def test_a_failed_install_is_failed_with_the_addon_error(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("apply_addon", cluster.id, message="image pull failed")
    response = await install(stubs, cluster.id)
    wr = await get_work_request(stubs, response.work_request.id)
    assert wr.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_FAILED
    assert addon.addon_error.code == "500"
    assert addon.addon_error.message == "image pull failed"


async def test_update_goes_updating_then_active_with_the_new_version(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await install(stubs, cluster.id, version="v1.13.3")
    current = await get_addon(stubs, cluster.id)
    response = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(
            cluster_id=cluster.id,
            name="CertManager",
            etag=current.etag,
            version="v1.14.5",
            configurations=[ad_pb.AddonConfiguration(key="numOfReplicas", value="3")],
        )
    )
    assert response.addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_UPDATING
    assert response.addon.etag != current.etag
    assert response.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_UPDATE_ADDON
    events = await watch_to_end(stubs, response.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ACTIVE
    assert addon.current_installed_version == "v1.14.5"
    assert [(c.key, c.value) for c in addon.configurations] == [("numOfReplicas", "3")]
    on_cluster = await simulator(app).addon_on_cluster(cluster.id, "CertManager")
    assert on_cluster is not None
    assert on_cluster.configurations["numOfReplicas"] == "3"


async def test_update_with_a_stale_etag_is_aborted(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    stale = (await get_addon(stubs, cluster.id)).etag
    await watch_to_end(
        stubs,
        (
            await stubs.addons.UpdateAddon(
                ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager", etag=stale)
            )
        ).work_request.id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(
                cluster_id=cluster.id, name="CertManager", etag=stale, version="v1.13.3"
            )
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.ABORTED
    assert details.error_info is not None
    assert details.error_info.reason == "ETAG_MISMATCH"
    assert details.error_info.metadata["current_etag"] == (await get_addon(stubs, cluster.id)).etag


async def test_update_while_installing_is_aborted_naming_the_work_request(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("apply_addon", cluster.id, times=-1)
    await app.engine.stop()  # keep the install in flight
    response = await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.13.3")
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.ABORTED
    assert details.error_info is not None
    assert details.error_info.metadata["blocking_work_request_id"] == response.work_request.id


async def test_update_validates_the_new_version_and_keys(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(
                cluster_id=cluster.id,
                name="CertManager",
                version="v1.12.3",
                configurations=[ad_pb.AddonConfiguration(key="colour", value="red")],
            )
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == ["version"]
    with pytest.raises(grpc.aio.AioRpcError) as both:
        await stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(
                cluster_id=cluster.id, name="CertManager", version="v1.13.3", follow_latest=True
            )
        )
    assert details_of(both.value).fields == ["follow_latest"]


async def test_disable_with_removal_goes_deleting_then_deleted_and_removes_it(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    response = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager", remove_existing=True)
    )
    assert response.addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_DELETING
    assert response.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_DISABLE_ADDON
    await watch_to_end(stubs, response.work_request.id)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await get_addon(stubs, cluster.id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    deleted = await stubs.addons.ListAddons(
        ad_pb.ListAddonsRequest(
            cluster_id=cluster.id, lifecycle_states=[ad_pb.ADDON_LIFECYCLE_STATE_DELETED]
        )
    )
    assert [a.name for a in deleted.addons] == ["CertManager"]
    assert await simulator(app).addon_on_cluster(cluster.id, "CertManager") is None


async def test_disable_without_removal_keeps_what_was_installed(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    response = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    await watch_to_end(stubs, response.work_request.id)
    on_cluster = await simulator(app).addon_on_cluster(cluster.id, "CertManager")
    assert on_cluster is not None
    assert (on_cluster.version, on_cluster.managed) == ("v1.14.5", False)
    # The service remembers what it left there: installing again adopts it.
    reinstalled = await install(stubs, cluster.id)
    assert reinstalled.addon.current_installed_version == "v1.14.5"
    addon = await get_addon(stubs, cluster.id)
    assert (addon.lifecycle_state, addon.current_installed_version) == (ACTIVE, "v1.14.5")
    on_cluster = await simulator(app).addon_on_cluster(cluster.id, "CertManager")
    assert on_cluster is not None
    assert on_cluster.managed


async def test_what_a_disable_left_behind_but_was_then_changed_by_hand_needs_override(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    response = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    await watch_to_end(stubs, response.work_request.id)
    await simulator(app).install_addon_by_hand(cluster.id, "CertManager", "v1.13.3")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.precondition is not None
    assert details.precondition.violations[0].type == "ADDON_INSTALLED_BY_HAND"
    assert "not the v1.14.5 it had when it was disabled" in details.message
    await install(stubs, cluster.id, override_existing=True)
    assert (await get_addon(stubs, cluster.id)).lifecycle_state == ACTIVE


async def test_after_a_disable_that_removed_it_a_hand_install_needs_override(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    response = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager", remove_existing=True)
    )
    await watch_to_end(stubs, response.work_request.id)
    await simulator(app).install_addon_by_hand(cluster.id, "CertManager", "v1.14.5")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.InstallAddon(
            ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
        )
    assert details_of(failure.value).code == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_essential_addon_cannot_be_removed(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id, "CoreDNS")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.DisableAddon(
            ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CoreDNS", remove_existing=True)
        )
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.precondition is not None
    assert details.precondition.violations[0].type == "ADDON_ESSENTIAL"


async def test_list_addons_pages_by_name_and_filters_by_state(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    for name in ("KubernetesDashboard", "CertManager", "CoreDNS"):
        await install(stubs, name=name, cluster_id=cluster.id)
    await simulator(app).inject_fault("apply_addon", cluster.id)
    await install(stubs, cluster.id, "FlannelOverlay")
    first = await stubs.addons.ListAddons(
        ad_pb.ListAddonsRequest(cluster_id=cluster.id, page_size=2)
    )
    assert [a.name for a in first.addons] == ["CertManager", "CoreDNS"]
    rest = await stubs.addons.ListAddons(
        ad_pb.ListAddonsRequest(
            cluster_id=cluster.id, page_size=2, page_token=first.next_page_token
        )
    )
    assert [a.name for a in rest.addons] == ["FlannelOverlay", "KubernetesDashboard"]
    assert rest.next_page_token == ""
    failed = await stubs.addons.ListAddons(
        ad_pb.ListAddonsRequest(
            cluster_id=cluster.id, lifecycle_states=[ad_pb.ADDON_LIFECYCLE_STATE_FAILED]
        )
    )
    assert [a.name for a in failed.addons] == ["FlannelOverlay"]


async def test_get_of_an_addon_that_is_not_installed_is_not_found(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await get_addon(stubs, cluster.id, "CertManager")
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.resource_info is not None
    assert details.resource_info.resource_name == f"{cluster.id}/CertManager"


async def test_addon_options_filter_by_kubernetes_version_and_name(stubs: Stubs) -> None:
    everything = await stubs.addons.ListAddonOptions(ad_pb.ListAddonOptionsRequest())
    names = [o.name for o in everything.addon_options]
    assert names == sorted(names)
    assert {"CertManager", "CoreDNS", "ClusterAutoscaler"} <= set(names)

    certs = await stubs.addons.ListAddonOptions(
        ad_pb.ListAddonOptionsRequest(kubernetes_version="v1.27.16", addon_name="CertManager")
    )
    (option,) = certs.addon_options
    assert [v.version_number for v in option.versions] == ["v1.12.3", "v1.13.3", "v1.14.5"]
    recalled = option.versions[0]
    assert recalled.status == ad_pb.ADDON_VERSION_STATUS_RECALLED
    assert "v1.27" in recalled.kubernetes_versions
    keys = {c.key: c for c in option.versions[-1].configurations}
    assert keys["numOfReplicas"].default_value == "1"

    autoscaler = await stubs.addons.ListAddonOptions(
        ad_pb.ListAddonOptionsRequest(kubernetes_version="v1.30", addon_name="ClusterAutoscaler")
    )
    (scaler,) = autoscaler.addon_options
    assert [v.version_number for v in scaler.versions] == ["v1.30.3"]
    assert any(c.key == "nodes" and c.is_required for c in scaler.versions[0].configurations)
    essential = {o.name for o in everything.addon_options if o.is_essential}
    assert essential == {"CoreDNS", "FlannelOverlay"}


async def test_addon_options_are_paginated(stubs: Stubs) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = await stubs.addons.ListAddonOptions(
            ad_pb.ListAddonOptionsRequest(page_size=3, page_token=token)
        )
        assert len(page.addon_options) <= 3
        seen += [o.name for o in page.addon_options]
        token = page.next_page_token
        if not token:
            break
    everything = await stubs.addons.ListAddonOptions(ad_pb.ListAddonOptionsRequest())
    assert seen == [o.name for o in everything.addon_options]
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.addons.ListAddonOptions(
            ad_pb.ListAddonOptionsRequest(kubernetes_version="1.29", page_size=-1)
        )
    assert details_of(failure.value).fields == ["kubernetes_version", "page_size"]


async def test_grpcurl_installs_and_gets_an_addon_with_json(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    code, out, err = await grpcurl(
        app,
        "clusterops.v1.AddonService/InstallAddon",
        data={
            "cluster_id": cluster.id,
            "name": "WeblogicKubernetesOperator",
            "configurations": [{"key": "numOfReplicas", "value": "2"}],
        },
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["addon"]["lifecycle_state"] == "ADDON_LIFECYCLE_STATE_CREATING"
    assert body["work_request"]["operation_type"] == "WORK_REQUEST_OPERATION_TYPE_ENABLE_ADDON"
    await watch_to_end(stubs, body["work_request"]["id"])

    code, out, err = await grpcurl(
        app,
        "clusterops.v1.AddonService/GetAddon",
        data={"cluster_id": cluster.id, "name": "WeblogicKubernetesOperator"},
    )
    assert code == 0, err
    addon = json.loads(out)["addon"]
    assert addon["lifecycle_state"] == "ADDON_LIFECYCLE_STATE_ACTIVE"
    assert addon["current_installed_version"] == "4.2.3"
    assert addon["configurations"] == [{"key": "numOfReplicas", "value": "2"}]
    assert addon["etag"]


async def test_install_logs_say_what_is_installed(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    response = await install(stubs, cluster.id, version="v1.13.3")
    messages = [e.message for e in await logs_of(stubs, response.work_request.id)]
    assert messages[0] == "Installing CertManager v1.13.3"
    assert messages[-1] == "CertManager v1.13.3 is ACTIVE"
