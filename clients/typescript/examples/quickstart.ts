// Create a cluster and a node pool, following the node pool's progress; typed errors; lists.
import { randomBytes } from "node:crypto";
import { createClient, FailedPrecondition, NodeLifecycleState } from "@clusterops/client";

const client = createClient({
  baseUrl: process.env.CLUSTEROPS_SERVER ?? "localhost:50051", // or https://... with tls
  token: process.env.CLUSTEROPS_TOKEN, // sent as `authorization: Bearer ...` when set
});

const created = await client.clusters.createCluster({
  compartmentId: "dev",
  name: `edge-${randomBytes(3).toString("hex")}`,
  kubernetesVersion: "v1.30.4",
  region: "eu-frankfurt-1",
  plan: "aws",
});
await client.workRequests.waitSucceeded(created, { timeoutMs: 120_000 });
const cluster = created.cluster!;

const started = await client.clusters.createNodePool({
  clusterId: cluster.id,
  name: "workers",
  nodeCount: 3,
});
// Follows the watch stream, resuming after a dropped connection; each event once.
await client.workRequests.waitSucceeded(started, {
  timeoutMs: 300_000,
  onEvent: ({ workRequest, logEntries }) => {
    for (const entry of logEntries) {
      console.log(`${workRequest!.percentComplete.toFixed(0).padStart(3)}%  ${entry.message}`);
    }
  },
});
for await (const node of client.clusters.listNodesAsync({ nodePoolId: started.nodePool!.id })) {
  console.log(node.name, NodeLifecycleState[node.lifecycleState]); // pages fetched as needed
}

try {
  await client.clusters.deleteCluster({ clusterId: cluster.id });
} catch (error) {
  if (!(error instanceof FailedPrecondition)) throw error;
  console.log("not deleted:", error.preconditionViolations[0]?.description); // google.rpc details
}

const history = client.workRequests.listWorkRequestsAsync({ resourceId: cluster.id });
for await (const workRequest of history) {
  console.log(workRequest.id, `${workRequest.percentComplete.toFixed(0)}%`);
}
client.close();
