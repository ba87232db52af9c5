"""Creating and deleting clusters."""

from __future__ import annotations

from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import Cluster, ClusterState
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.engine.context import Apply, OperationContext, StepFailed
from clusterops_server.operations.params import ClusterParams
from clusterops_server.providers.base import Provider
from clusterops_server.store.uow import UnitOfWork


async def _cluster(uow: UnitOfWork, cluster_id: str) -> Cluster:
    cluster = await uow.inventory.get_cluster(cluster_id)
    assert cluster is not None, cluster_id
    return cluster


def _set_state(ctx: OperationContext, state: ClusterState, action: ActionType | None) -> Apply:
    async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
        cluster = await _cluster(uow, ctx.params_as(ClusterParams).cluster_id)
        cluster.lifecycle_state = state
        cluster.touch(ctx.clock.now())
        await uow.inventory.save_cluster(cluster)
        if action is not None:
            wr.resource_action(EntityType.CLUSTER, cluster.id, action)

    return apply


class CreateCluster:
    operation_type = OperationType.CLUSTER_CREATE

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        return None

    async def run(self, ctx: OperationContext) -> None:
        cluster_id: str = ctx.params_as(ClusterParams).cluster_id

        async def create() -> None:
            async with ctx.store.read() as uow:
                cluster = await _cluster(uow, cluster_id)
            await self.provider.create_cluster(cluster)

        try:
            await ctx.step("create-control-plane", create)
        except StepFailed as failed:
            await ctx.finish(
                WorkRequestStatus.FAILED,
                apply=_set_state(ctx, ClusterState.FAILED, ActionType.FAILED),
                errors=[(failed.error.code, failed.error.message)],
                log="Cluster creation failed",
            )
            return
        await ctx.finish(
            WorkRequestStatus.SUCCEEDED,
            apply=_set_state(ctx, ClusterState.ACTIVE, ActionType.CREATED),
            log="Cluster is ACTIVE",
        )

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when creating fails: the cluster is FAILED, and can be deleted."""
        await _set_state(ctx, ClusterState.FAILED, ActionType.FAILED)(uow, wr)

    async def undo(self, ctx: OperationContext) -> None:
        cluster_id: str = ctx.params_as(ClusterParams).cluster_id

        async def delete() -> None:
            async with ctx.store.read() as uow:
                cluster = await _cluster(uow, cluster_id)
            await self.provider.delete_cluster(cluster)

        try:
            await ctx.step("undo-delete-control-plane", delete)
        except StepFailed as failed:
            # As when creating fails: the cluster is FAILED, and deleting it retries.
            await ctx.finish(
                WorkRequestStatus.FAILED,
                apply=_set_state(ctx, ClusterState.FAILED, ActionType.FAILED),
                errors=[(failed.error.code, failed.error.message)],
                log="Cancel incomplete: the cluster could not be removed",
            )
            return
        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=_set_state(ctx, ClusterState.DELETED, ActionType.DELETED),
            log="Canceled: the cluster was removed",
        )


class DeleteCluster:
    operation_type = OperationType.CLUSTER_DELETE

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        if wr.status is not WorkRequestStatus.ACCEPTED:
            raise FailedPrecondition(
                "deleting a cluster cannot be canceled once it has started",
                violation_type="NOT_CANCELABLE",
                subject=wr.id,
            )

    async def run(self, ctx: OperationContext) -> None:
        cluster_id: str = ctx.params_as(ClusterParams).cluster_id

        async def delete() -> None:
            async with ctx.store.read() as uow:
                cluster = await _cluster(uow, cluster_id)
            await self.provider.delete_cluster(cluster)

        try:
            await ctx.step("delete-control-plane", delete)
        except StepFailed as failed:
            await ctx.finish(
                WorkRequestStatus.FAILED,
                apply=_set_state(ctx, ClusterState.FAILED, None),
                errors=[(failed.error.code, failed.error.message)],
            )
            return
        deleted = _set_state(ctx, ClusterState.DELETED, ActionType.DELETED)

        async def with_addons(uow: UnitOfWork, wr: WorkRequest) -> None:
            await deleted(uow, wr)
            # Its add-ons went with it: DELETED, and never checked again.
            now = ctx.clock.now()
            for addon in await uow.addons.live_on_cluster(cluster_id, for_update=True):
                addon.gone_with_cluster()
                addon.touch(now)
                await uow.addons.save(addon)
                wr.set_resource(
                    WorkRequestResource(
                        EntityType.ADDON, ActionType.DELETED, addon.resource_id, addon.uri
                    )
                )

        await ctx.finish(WorkRequestStatus.SUCCEEDED, apply=with_addons, log="Cluster deleted")

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when deleting fails: the cluster is FAILED, and deleting it again retries."""
        await _set_state(ctx, ClusterState.FAILED, None)(uow, wr)

    async def undo(self, ctx: OperationContext) -> None:
        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=_set_state(ctx, ClusterState.ACTIVE, None),
            log="Canceled before it began",
        )
