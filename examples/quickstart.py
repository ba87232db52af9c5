"""Create a cluster and a node pool with the SDK, following the node pool's progress."""

import secrets

from clusterops import Client, FailedPrecondition, WatchEvent


def show(event: WatchEvent) -> None:
    for entry in event.log_entries:
        print(f"{event.work_request.percent_complete:3.0f}%  {entry.message}")


with Client.from_env() as client:  # CLUSTEROPS_SERVER, default localhost:50051
    cluster = client.clusters.create(
        compartment_id="dev",
        name=f"edge-{secrets.token_hex(3)}",
        kubernetes_version="v1.30.4",
        region="eu-frankfurt-1",
        plan="aws",
    ).result(timeout=120)  # waits for the work request, then reads the cluster again
    operation = client.clusters.create_node_pool(cluster.id, name="workers", node_count=3)
    pool = operation.result(timeout=300, on_event=show)
    print(f"{cluster.name}: node pool {pool.name} has {pool.node_count} nodes")

    try:
        client.clusters.delete(cluster.id)
    except FailedPrecondition as error:  # typed errors carry the server's details
        print("not deleted:", error.precondition_violations[0].description)

    for work_request in client.work_requests.list(resource_id=cluster.id):
        print(work_request.id, f"{work_request.percent_complete:.0f}%")
