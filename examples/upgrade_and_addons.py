"""Upgrade a cluster as far as it may go in one step, then install and configure an add-on."""

import secrets

from clusterops import Client, OperationFailed

with Client.from_env() as client:
    cluster = client.clusters.create(
        compartment_id="dev",
        name=f"old-{secrets.token_hex(3)}",
        kubernetes_version="v1.29.8",
        region="eu-frankfurt-1",
        plan="aws",
    ).result(timeout=120)
    versions = {v.version: v for v in client.upgrade_workflows.list_kubernetes_versions()}
    target = versions[cluster.kubernetes_version].upgrade_targets[-1]
    upgrade = client.upgrade_workflows.create(
        cluster.id, target_version=target, annotations={"ticket": "CHG-1234"}
    )
    try:
        workflow = upgrade.result(timeout=600)  # PreCheck, Snapshot, Cluster, PostCheck
        print(f"{workflow.metadata.name}: {workflow.spec.cluster_version} -> {target}")
    except OperationFailed as failed:  # the errors name the task that failed
        print("not upgraded:", failed.errors[0].code, failed.errors[0].message)

    for option in client.addons.list_options(kubernetes_version=target, addon_name="CertManager"):
        print(option.name, "versions:", ", ".join(v.version_number for v in option.versions))
    addon = client.addons.install(
        cluster.id, "CertManager", configurations={"numOfReplicas": "2"}
    ).result(timeout=120)
    addon = client.addons.update(  # the etag guards against a concurrent change
        cluster.id, "CertManager", etag=addon.etag, configurations={"numOfReplicas": "3"}
    ).result(timeout=120)
    settings = {c.key: c.value for c in addon.configurations}
    print(f"{addon.name} {addon.current_installed_version} is ACTIVE with {settings}")
