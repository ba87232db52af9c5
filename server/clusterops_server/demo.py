"""Seed a small simulated fleet so a new user has something to look at (`serve --demo`)."""

from __future__ import annotations

import logging
from datetime import time

from clusterops_server.app import App
from clusterops_server.domain.inventory import (
    Cluster,
    ClusterQuery,
    ClusterState,
    MaintenanceWindow,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.services.inventory import CreateNodePoolCommand

log = logging.getLogger(__name__)

# The simulated fault behind CCE's example: the legacy cluster's Cluster task fails once.
LEGACY_FAULT = (
    "upgrade:Cluster",
    "legacy-frankfurt",
    "control plane upgrade failed: etcd did not become healthy in time",
)

# compartment, name, version, region, plan, global account, sub account, window (UTC)
DEMO_FLEET = [
    (
        "dev",
        "dev-frankfurt",
        "v1.29.8",
        "eu-frankfurt-1",
        "aws",
        "ga-acme",
        "sa-dev",
        ("22:00", "02:00"),
    ),
    (
        "dev",
        "dev-ashburn",
        "v1.30.4",
        "us-ashburn-1",
        "aws",
        "ga-acme",
        "sa-dev",
        ("04:00", "08:00"),
    ),
    # The prod pair is KEB's example of orchestration operations: a gcp runtime whose
    # window is 04:00-08:00 and an azure one whose window is 22:00-02:00.
    (
        "prod",
        "prod-frankfurt",
        "v1.29.8",
        "eu-frankfurt-1",
        "gcp",
        "ga-acme",
        "sa-prod",
        ("04:00", "08:00"),
    ),
    (
        "prod",
        "prod-ashburn",
        "v1.28.13",
        "us-ashburn-1",
        "azure",
        "ga-acme",
        "sa-prod",
        ("22:00", "02:00"),
    ),
    # CCE's example cluster: on v1.17.17-r0, to go to v1.19.16-r80 (its control-plane
    # upgrade fails once: LEGACY_FAULT).
    (
        "legacy",
        "legacy-frankfurt",
        "v1.17.17-r0",
        "eu-frankfurt-1",
        "aws",
        "ga-acme",
        "sa-legacy",
        ("00:00", "04:00"),
    ),
]


async def seed_demo_fleet(app: App) -> None:
    """Add the demo clusters (ACTIVE) and start one node pool, unless clusters exist already."""
    async with app.store.read() as uow:
        existing = await uow.inventory.all_clusters(ClusterQuery())
    if existing:
        return
    now = app.clock.now()
    async with app.store.write() as uow:
        for compartment, name, version, region, plan, ga, sa, (start, end) in DEMO_FLEET:
            await uow.inventory.add_cluster(
                Cluster(
                    id=new_id(IdKind.CLUSTER),
                    compartment_id=compartment,
                    name=name,
                    kubernetes_version=version,
                    region=region,
                    plan=plan,
                    plan_id=app.plans.plan_id(plan),
                    global_account_id=ga,
                    sub_account_id=sa,
                    shoot_name=f"c-{name}",
                    lifecycle_state=ClusterState.ACTIVE,
                    create_time=now,
                    update_time=now,
                    maintenance_window=MaintenanceWindow(
                        time.fromisoformat(start), time.fromisoformat(end)
                    ),
                    labels={"env": compartment, "team": "platform"},
                )
            )
        await uow.commit()
    async with app.store.read() as uow:
        first = (await uow.inventory.all_clusters(ClusterQuery(compartment_id="dev")))[0]
        legacy = [
            c
            for c in await uow.inventory.all_clusters(ClusterQuery(compartment_id="legacy"))
            if c.name == LEGACY_FAULT[1]
        ]
    if app.simulator is not None and legacy:
        action, _, message = LEGACY_FAULT
        await app.simulator.inject_fault(action, legacy[0].id, times=1, message=message)
    pool, wr = await app.inventory.create_node_pool(
        CreateNodePoolCommand(cluster_id=first.id, name="workers", node_count=3)
    )
    log.info("demo fleet seeded; node pool %s is being created by %s", pool.id, wr.id)
