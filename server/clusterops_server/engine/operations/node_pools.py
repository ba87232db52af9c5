"""Creating and deleting node pools.

A create-node-pool work request succeeds only when every node is registered ACTIVE,
as OKE documents; nodes are provisioned in parallel, each in its own durable step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import (
    Cluster,
    Node,
    NodePool,
    NodePoolState,
    NodeState,
)
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import (
    UNEXPECTED_FAILURE,
    Apply,
    OperationContext,
    StepFailed,
    run_parallel,
)
from clusterops_server.operations.params import NodePoolParams
from clusterops_server.providers.base import Provider, ProviderError
from clusterops_server.store.uow import UnitOfWork

# Nodes provisioned at once per node pool.
PARALLEL_NODES = 8


async def _load(uow: UnitOfWork, node_pool_id: str) -> tuple[Cluster, NodePool, list[Node]]:
    pool = await uow.inventory.get_node_pool(node_pool_id)
    assert pool is not None, node_pool_id
    cluster = await uow.inventory.get_cluster(pool.cluster_id)
    assert cluster is not None, pool.cluster_id
    return cluster, pool, await uow.inventory.nodes_of(node_pool_id)


def _percent(nodes: list[Node], settled: set[NodeState]) -> float:
    return round(100.0 * sum(n.lifecycle_state in settled for n in nodes) / max(1, len(nodes)), 1)


class CreateNodePool:
    operation_type = OperationType.NODEPOOL_CREATE

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        return None

    async def run(self, ctx: OperationContext) -> None:
        pool_id: str = ctx.params_as(NodePoolParams).node_pool_id
        async with ctx.store.read() as uow:
            _, _, nodes = await _load(uow, pool_id)

        def job(node: Node) -> Callable[[], Awaitable[None]]:
            async def provision() -> None:
                # A node that fails is settled FAILED by its step (then, or before a
                # restart); the pool is concluded from the nodes' journaled states.
                with contextlib.suppress(StepFailed):
                    await self._provision(ctx, pool_id, node)

            return provision

        await run_parallel([job(n) for n in nodes], limit=PARALLEL_NODES)
        await self._conclude(ctx, pool_id)

    async def _provision(self, ctx: OperationContext, pool_id: str, node: Node) -> None:
        async def action() -> None:
            async with ctx.store.read() as uow:
                cluster, pool, _ = await _load(uow, pool_id)
            await self.provider.provision_node(cluster, pool, node)

        async def done(uow: UnitOfWork, wr: WorkRequest, _: dict[str, object]) -> None:
            await self._settle_node(uow, wr, ctx, pool_id, node.id, NodeState.ACTIVE, "")

        async def failed(uow: UnitOfWork, wr: WorkRequest, error: ProviderError) -> None:
            await self._settle_node(uow, wr, ctx, pool_id, node.id, NodeState.FAILED, error.message)

        await ctx.step(f"provision-node:{node.id}", action, done=done, failed=failed)

    async def _settle_node(
        self,
        uow: UnitOfWork,
        wr: WorkRequest,
        ctx: OperationContext,
        pool_id: str,
        node_id: str,
        state: NodeState,
        details: str,
    ) -> None:
        node = await uow.inventory.get_node(node_id)
        assert node is not None
        node.lifecycle_state = state
        node.lifecycle_details = details
        node.update_time = ctx.clock.now()
        await uow.inventory.save_node(node)
        _, _, nodes = await _load(uow, pool_id)
        wr.percent_complete = _percent(nodes, {NodeState.ACTIVE, NodeState.FAILED})
        if state is NodeState.ACTIVE:
            action, message, errors = (
                ActionType.CREATED,
                f"Node {node.name} ({node.id}) is ACTIVE",
                [],
            )
        else:
            action = ActionType.FAILED
            message = f"Node {node.name} ({node.id}) failed to register: {details}"
            errors = [ctx.error_entry("NodeRegistrationFailed", message)]
        changed = wr.resource_action(EntityType.NODE, node.id, action)
        await uow.work_requests.save(
            wr, changed=[changed], logs=[ctx.log_entry(message)], errors=errors
        )

    async def _conclude(self, ctx: OperationContext, pool_id: str) -> None:
        async with ctx.store.read() as uow:
            _, pool, nodes = await _load(uow, pool_id)
        failed = [n for n in nodes if n.lifecycle_state is NodeState.FAILED]

        async def settle_pool(uow: UnitOfWork, wr: WorkRequest) -> None:
            await self._settle_pool(uow, wr, ctx, pool_id)

        if not failed:
            await ctx.finish(
                WorkRequestStatus.SUCCEEDED,
                apply=settle_pool,
                log=f"Node pool {pool.name} is ACTIVE with {len(nodes)} nodes",
            )
            return
        await ctx.finish(
            WorkRequestStatus.FAILED,
            apply=settle_pool,
            log=f"Node pool {pool.name}: {len(failed)} of {len(nodes)} nodes did not become ACTIVE",
            errors=[
                (
                    "NodePoolCreationFailed",
                    f"{len(failed)} of {len(nodes)} nodes failed to register ACTIVE: "
                    + ", ".join(n.id for n in failed),
                )
            ],
        )

    async def _settle_pool(
        self, uow: UnitOfWork, wr: WorkRequest, ctx: OperationContext, pool_id: str
    ) -> None:
        """ACTIVE when every node is, NEEDS_ATTENTION when some are, FAILED when none is."""
        pool = await uow.inventory.get_node_pool(pool_id)
        assert pool is not None
        nodes = await uow.inventory.nodes_of(pool_id)
        active = sum(n.lifecycle_state is NodeState.ACTIVE for n in nodes)
        if active == len(nodes):
            pool.lifecycle_state = NodePoolState.ACTIVE
        elif active:
            pool.lifecycle_state = NodePoolState.NEEDS_ATTENTION
        else:
            pool.lifecycle_state = NodePoolState.FAILED
        pool.touch(ctx.clock.now())
        await uow.inventory.save_node_pool(pool)
        wr.resource_action(
            EntityType.NODE_POOL,
            pool_id,
            ActionType.CREATED if active == len(nodes) else ActionType.FAILED,
        )

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when nodes fail to register: each node still being created FAILED, and the
        pool settled from its nodes; deleting the pool removes what is left."""
        pool_id: str = ctx.params_as(NodePoolParams).node_pool_id
        for node in await uow.inventory.nodes_of(pool_id):
            if node.lifecycle_state is NodeState.CREATING:
                await self._settle_node(
                    uow, wr, ctx, pool_id, node.id, NodeState.FAILED, UNEXPECTED_FAILURE
                )
        await self._settle_pool(uow, wr, ctx, pool_id)

    async def undo(self, ctx: OperationContext) -> None:
        """A canceled create removes what it made: nodes first, then the pool."""
        pool_id: str = ctx.params_as(NodePoolParams).node_pool_id
        async with ctx.store.read() as uow:
            _, _, nodes = await _load(uow, pool_id)
        failures = await remove_nodes(ctx, self.provider, pool_id, nodes, step_prefix="undo")
        if failures:
            # As when deleting the pool fails: what is left waits for a delete.
            await ctx.finish(
                WorkRequestStatus.FAILED,
                apply=_attention(ctx, pool_id),
                log=f"Cancel incomplete: {len(failures)} node(s) could not be removed",
                errors=_removal_errors(failures),
            )
            return

        async def drop_pool(uow: UnitOfWork, wr: WorkRequest) -> None:
            pool = await uow.inventory.get_node_pool(pool_id)
            assert pool is not None
            pool.lifecycle_state = NodePoolState.DELETED
            pool.touch(ctx.clock.now())
            await uow.inventory.save_node_pool(pool)
            wr.resource_action(EntityType.NODE_POOL, pool_id, ActionType.DELETED)

        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=drop_pool,
            log="Canceled: the node pool and its nodes were removed",
        )


async def remove_nodes(
    ctx: OperationContext, provider: Provider, pool_id: str, nodes: list[Node], *, step_prefix: str
) -> list[tuple[Node, ProviderError]]:
    """Delete every node that is not already DELETED, one durable step each; the nodes that
    could not be deleted, by name. Every node gets its step, whatever happens to the others,
    so the outcome does not depend on which failure came first."""
    failures: list[tuple[Node, ProviderError]] = []

    def job(node: Node) -> Callable[[], Awaitable[None]]:
        async def delete() -> None:
            async def action() -> None:
                async with ctx.store.read() as uow:
                    cluster, pool, _ = await _load(uow, pool_id)
                await provider.delete_node(cluster, pool, node)

            async def done(uow: UnitOfWork, wr: WorkRequest, result: dict[str, object]) -> None:
                current = await uow.inventory.get_node(node.id)
                assert current is not None
                current.lifecycle_state = NodeState.DELETED
                current.update_time = ctx.clock.now()
                await uow.inventory.save_node(current)
                now_nodes = await uow.inventory.nodes_of(pool_id)
                wr.percent_complete = _percent(now_nodes, {NodeState.DELETED})
                changed = wr.resource_action(EntityType.NODE, node.id, ActionType.DELETED)
                await uow.work_requests.save(
                    wr,
                    changed=[changed],
                    logs=[ctx.log_entry(f"Node {node.name} ({node.id}) deleted")],
                )

            try:
                await ctx.step(f"{step_prefix}-delete-node:{node.id}", action, done=done)
            except StepFailed as failed:
                failures.append((node, failed.error))

        return delete

    live = [n for n in nodes if n.lifecycle_state is not NodeState.DELETED]
    await run_parallel([job(n) for n in live], limit=PARALLEL_NODES)
    return sorted(failures, key=lambda f: (f[0].name, f[0].id))


def _removal_errors(failures: list[tuple[Node, ProviderError]]) -> list[tuple[str, str]]:
    return [
        (error.code, f"Node {node.name} ({node.id}) could not be deleted: {error.message}")
        for node, error in failures
    ]


def _attention(ctx: OperationContext, pool_id: str) -> Apply:
    """The pool NEEDS_ATTENTION: deleting it again removes the nodes that are left."""

    async def attention(uow: UnitOfWork, wr: WorkRequest) -> None:
        current = await uow.inventory.get_node_pool(pool_id)
        assert current is not None
        current.lifecycle_state = NodePoolState.NEEDS_ATTENTION
        current.touch(ctx.clock.now())
        await uow.inventory.save_node_pool(current)

    return attention


class DeleteNodePool:
    operation_type = OperationType.NODEPOOL_DELETE

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        if wr.status is WorkRequestStatus.ACCEPTED:
            return
        raise FailedPrecondition(
            "deleting a node pool cannot be canceled once it has started: "
            "its nodes are being terminated",
            violation_type="NOT_CANCELABLE",
            subject=wr.id,
        )

    async def run(self, ctx: OperationContext) -> None:
        pool_id: str = ctx.params_as(NodePoolParams).node_pool_id
        async with ctx.store.read() as uow:
            _, pool, nodes = await _load(uow, pool_id)
        failures = await remove_nodes(ctx, self.provider, pool_id, nodes, step_prefix="run")
        if failures:
            await ctx.finish(
                WorkRequestStatus.FAILED,
                apply=_attention(ctx, pool_id),
                log=f"Node pool {pool.name}: {len(failures)} node(s) could not be deleted",
                errors=_removal_errors(failures),
            )
            return

        async def drop(uow: UnitOfWork, wr: WorkRequest) -> None:
            current = await uow.inventory.get_node_pool(pool_id)
            assert current is not None
            current.lifecycle_state = NodePoolState.DELETED
            current.touch(ctx.clock.now())
            await uow.inventory.save_node_pool(current)
            wr.resource_action(EntityType.NODE_POOL, pool_id, ActionType.DELETED)

        await ctx.finish(
            WorkRequestStatus.SUCCEEDED, apply=drop, log=f"Node pool {pool.name} deleted"
        )

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when a node fails to go."""
        await _attention(ctx, ctx.params_as(NodePoolParams).node_pool_id)(uow, wr)

    async def undo(self, ctx: OperationContext) -> None:
        # Only reached when canceled before it started: nothing was deleted.
        async def restore(uow: UnitOfWork, wr: WorkRequest) -> None:
            pool = await uow.inventory.get_node_pool(ctx.params_as(NodePoolParams).node_pool_id)
            assert pool is not None
            pool.lifecycle_state = NodePoolState.ACTIVE
            pool.touch(ctx.clock.now())
            await uow.inventory.save_node_pool(pool)

        await ctx.finish(WorkRequestStatus.CANCELED, apply=restore, log="Canceled before it began")
