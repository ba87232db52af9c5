"""Two of everything a paged List returns, every paged List as a call taking a page
token, and page tokens taken apart and signed again: for tests of page tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.domain.listing import Cursor, encode_page_token, sign_page_token

from tests import orchestration_helpers as orchestrations
from tests.addon_helpers import install
from tests.conftest import Stubs, seed_cluster
from tests.helpers import watch_to_end

Call = Callable[[Stubs, str], Awaitable[Any]]


@dataclass
class World:
    cluster: str
    node_pool: str
    work_request: str
    orchestration: str


async def build_world(app: App, stubs: Stubs) -> World:
    """Two of everything a List returns, so each List with page_size 1 issues a token."""
    first = await seed_cluster(app)
    second = await seed_cluster(app)
    pools = []
    for name, nodes in (("a", 2), ("b", 1)):
        created = await stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=first.id, name=name, node_count=nodes)
        )
        await watch_to_end(stubs, created.work_request.id)
        pools.append(created)
    await install(stubs, first.id, "CertManager")
    await install(stubs, first.id, "KubernetesDashboard")
    for cluster in (first, second):
        upgrade = await stubs.upgrade_workflows.CreateUpgradeWorkflow(
            uw_pb.CreateUpgradeWorkflowRequest(cluster_id=cluster.id, target_version="v1.30.4")
        )
        await watch_to_end(stubs, upgrade.work_request.id)
    orchestration = await orchestrations.create(stubs, dry_run=True)
    await orchestrations.create(stubs, dry_run=True)
    return World(
        first.id,
        pools[0].node_pool.id,
        pools[0].work_request.id,
        orchestration.orchestration.id,
    )


def lists(world: World) -> dict[str, Call]:
    """Every paged List, with page_size 1, called with a page token."""
    return {
        "ListWorkRequests": lambda s, t: s.work_requests.ListWorkRequests(
            wr_pb.ListWorkRequestsRequest(page_size=1, page_token=t)
        ),
        "ListWorkRequestLogs": lambda s, t: s.work_requests.ListWorkRequestLogs(
            wr_pb.ListWorkRequestLogsRequest(
                work_request_id=world.work_request, page_size=1, page_token=t
            )
        ),
        "ListWorkRequestErrors": lambda s, t: s.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(
                work_request_id=world.work_request, page_size=1, page_token=t
            )
        ),
        "ListClusters": lambda s, t: s.clusters.ListClusters(
            cl_pb.ListClustersRequest(page_size=1, page_token=t)
        ),
        "ListNodePools": lambda s, t: s.clusters.ListNodePools(
            cl_pb.ListNodePoolsRequest(cluster_id=world.cluster, page_size=1, page_token=t)
        ),
        "ListNodes": lambda s, t: s.clusters.ListNodes(
            cl_pb.ListNodesRequest(node_pool_id=world.node_pool, page_size=1, page_token=t)
        ),
        "ListUpgradeWorkflows": lambda s, t: s.upgrade_workflows.ListUpgradeWorkflows(
            uw_pb.ListUpgradeWorkflowsRequest(page_size=1, page_token=t)
        ),
        "ListAddons": lambda s, t: s.addons.ListAddons(
            ad_pb.ListAddonsRequest(cluster_id=world.cluster, page_size=1, page_token=t)
        ),
        "ListAddonOptions": lambda s, t: s.addons.ListAddonOptions(
            ad_pb.ListAddonOptionsRequest(page_size=1, page_token=t)
        ),
        "ListOrchestrations": lambda s, t: s.orchestrations.ListOrchestrations(
            orc_pb.ListOrchestrationsRequest(page_size=1, page_token=t)
        ),
        "ListOrchestrationOperations": lambda s, t: s.orchestrations.ListOrchestrationOperations(
            orc_pb.ListOrchestrationOperationsRequest(
                orchestration_id=world.orchestration, page_size=1, page_token=t
            )
        ),
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def payload_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def resigned(app: App, token: str, key: list[Any]) -> str:
    """The token with its cursor replaced, signed with the server's own key: only the
    strict decoding stands between it and the query."""
    signing = await app.store.page_tokens.signing_key()
    return encode_page_token(Cursor(tuple(key)), payload_of(token)["q"], signing, "system")


async def signed(app: App, payload: bytes, scope: str = "system") -> str:
    """Any payload, signed with the server's own key as if the server had issued it."""
    return sign_page_token(payload, await app.store.page_tokens.signing_key(), scope)
