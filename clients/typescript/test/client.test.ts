// The client against a real `clusterops serve --demo`: every kind of resource listed and
// read, waits that survive a cut connection, typed errors from google.rpc details, and
// the README's example.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  type ClusteropsClient,
  type CreateClusterResponse,
  Cancelled,
  createClient,
  EtagMismatch,
  InvalidArgument,
  NodeLifecycleState,
  NodePoolLifecycleState,
  NotFound,
  OutOfRange,
  type ReconnectEvent,
  type WatchWorkRequestResponse,
  WatchEventType,
  WorkRequestStatus,
} from "@clusterops/client";
import {
  collect,
  CuttingProxy,
  PACKAGE_DIR,
  ROOT,
  type Server,
  startServer,
  suffix,
} from "./support.js";

let server: Server;
let client: ClusteropsClient;

before(async () => {
  // Simulated steps of 50 ms: an operation takes a fraction of a second, yet is still
  // running when a watch started right after it begins, so a cut lands mid-stream.
  server = await startServer("--demo", "--sim-step-seconds", "0.05");
  client = createClient({ baseUrl: `http://${server.address}` });
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Start creating a cluster in compartment dev; the response holds its work request. */
function startCluster(via: ClusteropsClient): Promise<CreateClusterResponse> {
  return via.clusters.createCluster({
    compartmentId: "dev",
    name: `ts-${suffix()}`,
    kubernetesVersion: "v1.30.4",
    region: "eu-frankfurt-1",
    plan: "aws",
  });
}

describe("every kind of resource", () => {
  test("lists and gets clusters, node pools, nodes and work requests with their logs", async () => {
    const clusters = await client.clusters.listClustersAsync({}).toArray();
    assert.deepEqual(clusters.map((c) => c.name).sort(), [
      "dev-ashburn",
      "dev-frankfurt",
      "legacy-frankfurt",
      "prod-ashburn",
      "prod-frankfurt",
    ]);
    const first = clusters[0]!;
    assert.deepEqual((await client.clusters.getCluster({ clusterId: first.id })).cluster, first);

    const pools = [];
    for (const cluster of clusters) {
      pools.push(
        ...(await client.clusters.listNodePoolsAsync({ clusterId: cluster.id }).toArray()),
      );
    }
    assert.ok(pools.length >= 1, "the demo creates a node pool");
    const pool = pools[0]!;
    assert.equal(
      (await client.clusters.getNodePool({ nodePoolId: pool.id })).nodePool?.id,
      pool.id,
    );
    const demoWork = await client.workRequests.wait(
      (await client.workRequests.listWorkRequestsAsync({ resourceId: pool.id }).toArray())[0]!,
      { timeoutMs: 20_000 },
    );
    assert.equal(demoWork.status, WorkRequestStatus.SUCCEEDED);
    const nodes = await client.clusters.listNodesAsync({ nodePoolId: pool.id }).toArray();
    assert.equal(nodes.length, pool.nodeCount);
    assert.ok(nodes.every((n) => n.lifecycleState === NodeLifecycleState.ACTIVE));

    const got = await client.workRequests.getWorkRequest({ workRequestId: demoWork.id });
    assert.equal(got.workRequest?.percentComplete, 100);
    const logs = await client.workRequests
      .listWorkRequestLogsAsync({ workRequestId: demoWork.id })
      .toArray();
    assert.ok(logs.length > 0);
    const errors = await client.workRequests
      .listWorkRequestErrorsAsync({ workRequestId: demoWork.id })
      .toArray();
    assert.deepEqual(errors, []);
  });

  test("pages: a page size of one walks every cluster, one page each", async () => {
    const pages = [];
    for await (const page of client.clusters.listClustersAsync({ pageSize: 1 }).pages()) {
      pages.push(page);
    }
    const all = await client.clusters.listClustersAsync({}).toArray();
    assert.equal(pages.length, all.length);
    assert.ok(pages.every((p) => p.items.length === 1));
    assert.equal(pages.at(-1)?.nextPageToken, "");
    assert.ok(pages.slice(0, -1).every((p) => p.nextPageToken !== ""));
  });

  test("lists and gets upgrade workflows, add-ons, their options, orchestrations and operations", async () => {
    const { versions } = await client.upgradeWorkflows.listKubernetesVersions({});
    const [cluster] = await client.clusters
      .listClustersAsync({ filter: 'name = "dev-ashburn"' })
      .toArray();
    assert.ok(cluster);
    const current = versions.find((v) => v.version === cluster.kubernetesVersion);
    const target = current?.upgradeTargets.at(-1);
    assert.ok(target, `an upgrade target for ${cluster.kubernetesVersion}`);

    const upgrade = await client.upgradeWorkflows.createUpgradeWorkflow({
      clusterId: cluster.id,
      targetVersion: target,
    });
    assert.equal(
      (await client.workRequests.wait(upgrade, { timeoutMs: 20_000 })).status,
      WorkRequestStatus.SUCCEEDED,
    );
    const workflowId = upgrade.upgradeWorkflow!.metadata!.uid;
    const workflows = await client.upgradeWorkflows
      .listUpgradeWorkflowsAsync({ clusterId: cluster.id })
      .toArray();
    assert.deepEqual(
      workflows.map((w) => w.metadata?.uid),
      [workflowId],
    );
    const workflow = await client.upgradeWorkflows.getUpgradeWorkflow({
      upgradeWorkflowId: workflowId,
    });
    assert.equal(workflow.upgradeWorkflow?.spec?.targetVersion, target);

    const options = await client.addons
      .listAddonOptionsAsync({ kubernetesVersion: target })
      .toArray();
    assert.ok(options.some((o) => o.name === "CertManager"));
    const installed = await client.addons.installAddon({
      clusterId: cluster.id,
      name: "CertManager",
    });
    await client.workRequests.waitSucceeded(installed, { timeoutMs: 20_000 });
    const addons = await client.addons.listAddonsAsync({ clusterId: cluster.id }).toArray();
    assert.deepEqual(
      addons.map((a) => a.name),
      ["CertManager"],
    );
    const addon = await client.addons.getAddon({ clusterId: cluster.id, name: "CertManager" });
    assert.equal(addon.addon?.name, "CertManager");

    const orchestration = await client.orchestrations.createOrchestration({
      compartmentId: "prod",
      parameters: {
        targets: { include: [{ target: "all" }] },
        dryRun: true,
        kubernetesVersion: "v1.29.8",
      },
    });
    await client.workRequests.wait(orchestration, { timeoutMs: 20_000 });
    const orchestrationId = orchestration.orchestration!.id;
    const listed = await client.orchestrations
      .listOrchestrationsAsync({ compartmentId: "prod" })
      .toArray();
    assert.ok(listed.some((o) => o.id === orchestrationId));
    const operations = client.orchestrations.listOrchestrationOperationsAsync({ orchestrationId });
    const [page] = await collect(operations.pages());
    assert.ok(page && page.items.length > 0 && page.response.totalCount === page.items.length);
    const operation = await client.orchestrations.getOrchestrationOperation({
      orchestrationId,
      operationId: page.items[0]!.id,
    });
    assert.equal(operation.operation?.id, page.items[0]!.id);
    assert.equal(
      (await client.orchestrations.getOrchestration({ orchestrationId })).orchestration?.id,
      orchestrationId,
    );
  });
});

describe("notifications", () => {
  test("creates, lists, gets and deletes a webhook subscription with its delivery state", async () => {
    const created = await client.notifications.createSubscription({
      compartmentId: "dev",
      url: "http://127.0.0.1:9/hook",
      secret: "0123456789abcdef",
      filter: "status = FAILED",
    });
    const subscription = created.subscription!;
    assert.ok(subscription.id.startsWith("sub"));
    const listed = await client.notifications
      .listSubscriptionsAsync({ compartmentId: "dev" })
      .toArray();
    assert.ok(listed.some((s) => s.id === subscription.id));
    const got = await client.notifications.getSubscription({ subscriptionId: subscription.id });
    assert.equal(got.subscription?.url, "http://127.0.0.1:9/hook");
    await client.notifications.deleteSubscription({ subscriptionId: subscription.id });
    await assert.rejects(
      client.notifications.getSubscription({ subscriptionId: subscription.id }),
      NotFound,
    );
  });
});

describe("simulator", () => {
  test("adds and lists a fault, reads step times, and refuses an unknown action", async () => {
    // A target no cluster has: the other tests' operations never meet this fault.
    const target = "cls-00000000000000000000";
    const added = await client.simulator.addFault({ action: "provision_node", target, times: 2 });
    assert.equal(added.fault?.remaining, 2);
    const listed = await client.simulator.listFaults({});
    assert.ok(listed.faults.some((f) => f.id === added.fault?.id && f.target === target));
    const times = await client.simulator.getStepTimes({});
    assert.ok(times.stepTimes.some((t) => t.action === "upgrade:PreCheck"));
    await assert.rejects(
      client.simulator.addFault({ action: "reboot_everything" }),
      (error: unknown) =>
        error instanceof InvalidArgument && error.fieldViolations.some((v) => v.field === "action"),
    );
    // Not cleared: the demo's own fault (the legacy cluster's) serves other tests.
  });
});

describe("waiting", () => {
  test("wait() follows a cluster and a node pool to their end through a cut connection", async () => {
    const proxy = await CuttingProxy.start(server.port);
    const viaProxy = createClient({ baseUrl: `127.0.0.1:${proxy.port}` });
    try {
      const created = await startCluster(viaProxy);
      const seen: WatchWorkRequestResponse[] = [];
      const reconnects: ReconnectEvent[] = [];
      const cutOnce = (event: WatchWorkRequestResponse): void => {
        seen.push(event);
        if (proxy.cuts === 0) proxy.cut(); // right after the first event: mid-stream
      };
      const options = {
        timeoutMs: 20_000,
        onEvent: cutOnce,
        onReconnect: (e: ReconnectEvent) => reconnects.push(e),
        reconnect: { initialBackoffMs: 10 },
      };
      const clusterDone = await viaProxy.workRequests.waitSucceeded(created, options);
      assert.equal(clusterDone.status, WorkRequestStatus.SUCCEEDED);
      assert.equal(proxy.cuts, 1);
      assert.ok(reconnects.length >= 1, "the wait reconnected");
      assert.equal(reconnects[0]?.action, "reconnect");
      assert.equal(reconnects[0]?.revision, seen[0]?.revision, "resumed after the last event seen");
      assert.ok(proxy.connections >= 2);

      seen.length = 0;
      reconnects.length = 0;
      proxy.cuts = 0;
      const started = await viaProxy.clusters.createNodePool({
        clusterId: created.cluster!.id,
        name: "workers",
        nodeCount: 3,
      });
      const poolDone = await viaProxy.workRequests.wait(started, options);
      assert.equal(poolDone.status, WorkRequestStatus.SUCCEEDED);
      assert.equal(proxy.cuts, 1);
      assert.equal(reconnects[0]?.revision, seen[0]?.revision, "resumed after the snapshot");
      assert.equal(seen[0]?.eventType, WatchEventType.SNAPSHOT);
      const revisions = seen.map((e) => e.revision);
      assert.deepEqual(
        revisions,
        [...new Set(revisions)].sort((a, b) => (a < b ? -1 : 1)),
        "each event once, in order",
      );
      assert.equal(seen.at(-1)?.workRequest?.status, WorkRequestStatus.SUCCEEDED);
      const pool = await viaProxy.clusters.getNodePool({ nodePoolId: started.nodePool!.id });
      assert.equal(pool.nodePool?.lifecycleState, NodePoolLifecycleState.ACTIVE);
    } finally {
      viaProxy.close();
      await proxy.close();
    }
  });

  test("watch() resumed after a revision yields only the changes after it", async () => {
    const created = await startCluster(client);
    const all = await collect(client.workRequests.watch(created));
    assert.ok(all.length >= 3);
    const resumed = await collect(
      client.workRequests.watch(created, { afterRevision: all[1]!.revision }),
    );
    assert.deepEqual(
      resumed.map((e) => e.revision),
      all.slice(2).map((e) => e.revision),
    );
  });
  test("a revision that cannot be resumed restarts the watch from a snapshot", async () => {
    const finished = await client.workRequests.wait(await startCluster(client), {
      timeoutMs: 20_000,
    });
    const reconnects: ReconnectEvent[] = [];
    // A revision beyond the store's: the server answers OUT_OF_RANGE, as for compacted history.
    const events = await collect(
      client.workRequests.watch(finished, {
        afterRevision: 1n << 40n,
        onReconnect: (e) => reconnects.push(e),
      }),
    );
    assert.deepEqual(
      reconnects.map((e) => [e.action, e.revision, e.error.constructor]),
      [["restart", 1n << 40n, OutOfRange]],
    );
    assert.deepEqual(
      events.map((e) => [e.eventType, e.workRequest?.status]),
      [[WatchEventType.SNAPSHOT, WorkRequestStatus.SUCCEEDED]],
    );
  });

  test("a watch its caller cancels throws Cancelled and does not reconnect", async () => {
    const [workRequest] = await client.workRequests
      .listWorkRequestsAsync({ pageSize: 1 })
      .toArray();
    const controller = new AbortController();
    controller.abort();
    const reconnects: ReconnectEvent[] = [];
    const watch = client.workRequests.watch(workRequest!, {
      signal: controller.signal,
      onReconnect: (e) => reconnects.push(e),
    });
    await assert.rejects(collect(watch), Cancelled);
    assert.deepEqual(reconnects, []);
  });
});

describe("typed errors", () => {
  test("a malformed request is InvalidArgument naming each bad field", async () => {
    const [cluster] = await client.clusters
      .listClustersAsync({ pageSize: 1 })
      .pages()
      .next()
      .then((r) => r.value!.items);
    await assert.rejects(
      client.clusters.createNodePool({ clusterId: cluster!.id, name: "Not A Name", nodeCount: 0 }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgument, String(error));
        assert.equal(error.reason, "INVALID_ARGUMENT");
        const fields = error.fieldViolations.map((v) => v.field).sort();
        assert.deepEqual(fields, ["name", "node_count"]);
        assert.ok(error.fieldViolations.every((v) => v.description.length > 0));
        return true;
      },
    );
  });

  test("a thousand bad values still arrive as one bounded InvalidArgument", async () => {
    await assert.rejects(
      client.workRequests.listWorkRequests({
        compartmentId: "dev",
        statuses: Array<WorkRequestStatus>(1000).fill(99 as WorkRequestStatus),
      }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgument, String(error));
        assert.equal(error.fieldViolations.length, 6);
        assert.match(error.fieldViolations.at(-1)!.description, /995 more/);
        return true;
      },
    );
  });

  test("an unknown resource is NotFound with its type and name", async () => {
    const missing = "cls-00000000000000000000";
    await assert.rejects(client.clusters.getCluster({ clusterId: missing }), (error: unknown) => {
      assert.ok(error instanceof NotFound, String(error));
      assert.equal(error.resourceName, missing);
      assert.equal(error.resourceType, "cluster");
      return true;
    });
  });
  test("a stale etag is EtagMismatch carrying the current etag", async () => {
    const [cluster] = await client.clusters
      .listClustersAsync({ filter: 'name = "prod-frankfurt"' })
      .toArray();
    await assert.rejects(
      client.clusters.deleteCluster({ clusterId: cluster!.id, etag: "stale" }),
      (error: unknown) => {
        assert.ok(error instanceof EtagMismatch, String(error));
        assert.equal(error.reason, "ETAG_MISMATCH");
        assert.equal(error.currentEtag, cluster!.etag);
        return true;
      },
    );
  });
});

describe("options", () => {
  test("defaultTimeoutMs 0 means no deadline, not one already passed", async () => {
    const patient = createClient({ baseUrl: server.address, defaultTimeoutMs: 0 });
    try {
      const { clusters } = await patient.clusters.listClusters({ compartmentId: "dev" });
      assert.ok(clusters.length >= 2);
    } finally {
      patient.close();
    }
  });

  test("tls options with an http:// baseUrl are refused before any call", () => {
    assert.throws(
      () => createClient({ baseUrl: `http://${server.address}`, tls: true }),
      /https:\/\/ baseUrl/,
    );
  });
});

describe("the README", () => {
  test("shows examples/quickstart.ts verbatim", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const blocks = [...readme.matchAll(/```typescript\n(.*?)```/gs)].map((m) => m[1]);
    assert.deepEqual(blocks, [
      await readFile(join(PACKAGE_DIR, "examples", "quickstart.ts"), "utf8"),
    ]);
  });

  test("its example runs against the server", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(PACKAGE_DIR, "build", "examples", "quickstart.js")],
      { env: { ...process.env, CLUSTEROPS_SERVER: server.address }, timeout: 30_000 },
    );
    const lines = stdout.trimEnd().split("\n");
    assert.equal(lines[0], "  0%  Creating node pool workers with 3 nodes");
    assert.ok(lines.includes("100%  Node pool workers is ACTIVE with 3 nodes"), stdout);
    assert.equal(
      lines.filter((l) => / ACTIVE$/.test(l) && l.startsWith("workers-")).length,
      3,
      stdout,
    );
    assert.ok(
      lines.some((l) => l.startsWith("not deleted: cluster cls-")),
      stdout,
    );
    assert.equal(lines.filter((l) => /^wr-[0-9a-f]{20} 100%$/.test(l)).length, 2, stdout);
  });
});
