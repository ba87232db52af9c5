// The client against a server with bearer tokens and mutual TLS (its certificate and the
// client's from the test's own CA), whose simulated steps take 30 s so that an operation
// stays in progress: the conflict it causes is certain, not a race.

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, test } from "node:test";
import {
  type ClientOptions,
  type ClusteropsClient,
  Conflict,
  createClient,
  DeadlineExceeded,
  PermissionDenied,
  type TlsOptions,
  Unauthenticated,
  Unavailable,
  WorkRequestStatus,
} from "@clusterops/client";
import {
  type Certificates,
  makeCertificates,
  type Server,
  startServer,
  writeAuthConfig,
} from "./support.js";

let certs: Certificates;
let server: Server;
let admin: ClusteropsClient;
const opened: ClusteropsClient[] = [];

/** A client trusting the test CA and presenting the client certificate, unless told. */
function connect(options: Partial<ClientOptions> = {}, tls: TlsOptions = {}): ClusteropsClient {
  const client = createClient({
    baseUrl: server.address,
    tls: { ca: certs.caPem, cert: certs.clientCertPem, key: certs.clientKeyPem, ...tls },
    ...options,
  });
  opened.push(client);
  return client;
}

before(async () => {
  certs = await makeCertificates();
  server = await startServer(
    "--demo",
    "--sim-step-seconds",
    "30",
    "--auth-config",
    await writeAuthConfig(certs.directory),
    "--tls-cert",
    certs.serverCert,
    "--tls-key",
    certs.serverKey,
    "--tls-client-ca",
    certs.caPath,
  );
  admin = connect({ baseUrl: `https://${server.address}`, token: "admin-token" });
});

after(async () => {
  for (const client of opened) client.close();
  await server?.stop();
  if (certs) await rm(certs.directory, { recursive: true, force: true });
});

test("a call with a token, over mutual TLS with the test's CA, is answered", async () => {
  const clusters = await admin.clusters.listClustersAsync({ compartmentId: "dev" }).toArray();
  assert.deepEqual(clusters.map((c) => c.name).sort(), ["dev-ashburn", "dev-frankfurt"]);
});

test("host:port with tls options means https", async () => {
  const { clusters } = await connect({ token: "admin-token" }).clusters.listClusters({
    compartmentId: "prod",
  });
  assert.equal(clusters.length, 2);
});

test("without a token the call is Unauthenticated; beyond a token's policies, PermissionDenied", async () => {
  await assert.rejects(connect().clusters.listClusters({}), Unauthenticated);
  const reader = connect({ token: "reader-token" });
  const { clusters } = await reader.clusters.listClusters({ compartmentId: "dev" });
  assert.equal(clusters.length, 2);
  await assert.rejects(
    reader.clusters.createNodePool({ clusterId: clusters[0]!.id, name: "denied", nodeCount: 1 }),
    PermissionDenied,
  );
});

test("a server certificate from another CA is refused: Unavailable, as grpc reports it", async () => {
  const client = connect({ token: "admin-token" }, { ca: certs.otherCaPem });
  await assert.rejects(client.clusters.listClusters({}), (error: unknown) => {
    assert.ok(error instanceof Unavailable, String(error));
    assert.match(String((error.cause as Error).message), /certificate/);
    return true;
  });
});

test("without a client certificate the server refuses the connection: Unavailable", async () => {
  const client = connect({ token: "admin-token" }, { cert: undefined, key: undefined });
  await assert.rejects(client.clusters.listClusters({}), Unavailable);
});

test("a second node pool on a busy cluster is a Conflict naming the first one's work request", async () => {
  const [cluster] = await admin.clusters
    .listClustersAsync({ compartmentId: "prod", filter: 'name = "prod-ashburn"' })
    .toArray();
  assert.ok(cluster);
  const first = await admin.clusters.createNodePool({
    clusterId: cluster.id,
    name: "first",
    nodeCount: 1,
  });
  assert.notEqual(first.workRequest?.status, WorkRequestStatus.SUCCEEDED);
  await assert.rejects(
    admin.clusters.createNodePool({ clusterId: cluster.id, name: "second", nodeCount: 1 }),
    (error: unknown) => {
      assert.ok(error instanceof Conflict, String(error));
      assert.equal(error.reason, "RESOURCE_BUSY");
      assert.equal(error.blockingWorkRequestId, first.workRequest?.id);
      assert.equal(error.resourceId, cluster.id);
      assert.match(error.message, new RegExp(first.workRequest!.id));
      return true;
    },
  );
});

test("wait() past its timeout throws DeadlineExceeded with reason WAIT_TIMEOUT", async () => {
  const [running] = await admin.workRequests
    .listWorkRequestsAsync({
      statuses: [WorkRequestStatus.ACCEPTED, WorkRequestStatus.IN_PROGRESS],
    })
    .toArray();
  assert.ok(running, "the demo's node pool is still being created");
  await assert.rejects(admin.workRequests.wait(running, { timeoutMs: 300 }), (error: unknown) => {
    assert.ok(error instanceof DeadlineExceeded, String(error));
    assert.equal(error.reason, "WAIT_TIMEOUT");
    assert.equal(error.metadata["work_request_id"], running.id);
    return true;
  });
});
