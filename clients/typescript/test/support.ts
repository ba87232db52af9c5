/**
 * What the tests run against: a real `clusterops serve` process on a free port, a TCP
 * proxy that can cut every connection through it, and certificates from the Python
 * tests' own helper (tests/certs.py).
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/** The repository root: the nearest directory above this file that holds buf.yaml (the
 * Python SDK and server have pyproject.toml files of their own below it). */
export const ROOT = ((): string => {
  for (
    let dir = dirname(fileURLToPath(import.meta.url));
    dir !== dirname(dir);
    dir = dirname(dir)
  ) {
    if (existsSync(join(dir, "buf.yaml"))) return dir;
  }
  throw new Error("no buf.yaml above the tests: run them from the repository");
})();
export const PACKAGE_DIR = join(ROOT, "clients", "typescript");
const PYTHON = process.env["CLUSTEROPS_PYTHON"] ?? join(ROOT, ".venv", "bin", "python");

export interface Server {
  readonly host: string;
  readonly port: number;
  readonly address: string;
  readonly directory: string;
  stop(): Promise<void>;
}

/** `clusterops serve --port 0` on a fresh SQLite file, with `args` added. */
export async function startServer(...args: string[]): Promise<Server> {
  const directory = await mkdtemp(join(tmpdir(), "clusterops-ts-"));
  const child = spawn(
    PYTHON,
    [
      "-m",
      "clusterops.cli.main",
      "serve",
      "--port",
      "0",
      "--database-url",
      `sqlite:///${join(directory, "clusterops.db")}`,
      "--grace-seconds",
      "1",
      ...args,
    ],
    {
      cwd: directory,
      // Quiet: grpc logs every client that closes its connection at INFO.
      env: { ...process.env, CLUSTEROPS_LOG_LEVEL: "ERROR", GRPC_VERBOSITY: "ERROR" },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const port = await listeningPort(child, exited);
  return {
    host: "127.0.0.1",
    port,
    address: `127.0.0.1:${port}`,
    directory,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** The port from the "clusterops listening on HOST:PORT" line serve prints once ready. */
async function listeningPort(child: ChildProcess, exited: Promise<number | null>): Promise<number> {
  const lines = createInterface({ input: child.stdout! });
  const found = new Promise<number>((resolve, reject) => {
    lines.on("line", (line) => {
      const match = /listening on .*:(\d+)$/.exec(line);
      if (match) resolve(Number(match[1]));
    });
    void exited.then((code) => reject(new Error(`clusterops serve exited with ${code}`)));
  });
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error("clusterops serve did not start in 30 s")), 30_000).unref(),
  );
  try {
    return await Promise.race([found, timeout]);
  } finally {
    lines.removeAllListeners("line");
  }
}

/** A TCP proxy to `target` whose `cut()` drops every connection through it at once. */
export class CuttingProxy {
  readonly #server: net.Server;
  readonly #pairs = new Set<[net.Socket, net.Socket]>();
  connections = 0;
  cuts = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(targetPort: number): Promise<CuttingProxy> {
    const server = net.createServer();
    const proxy = new CuttingProxy(server);
    server.on("connection", (downstream) => {
      proxy.connections += 1;
      const upstream = net.connect(targetPort, "127.0.0.1");
      const pair: [net.Socket, net.Socket] = [downstream, upstream];
      proxy.#pairs.add(pair);
      downstream.pipe(upstream).pipe(downstream);
      const close = (): void => {
        downstream.destroy();
        upstream.destroy();
        proxy.#pairs.delete(pair);
      };
      downstream.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Reset every open connection, as a network failure would. */
  cut(): void {
    this.cuts += 1;
    for (const [downstream, upstream] of this.#pairs) {
      downstream.resetAndDestroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export interface Certificates {
  readonly directory: string;
  /** The test CA, and the paths of what it issued. */
  readonly caPem: string;
  readonly caPath: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** A client certificate and key (PEM), for mutual TLS. */
  readonly clientCertPem: string;
  readonly clientKeyPem: string;
  /** A CA that signed nothing the server has. */
  readonly otherCaPem: string;
}

/** A test CA with a server certificate for 127.0.0.1 and a client one; an unrelated CA. */
export async function makeCertificates(): Promise<Certificates> {
  const directory = await mkdtemp(join(tmpdir(), "clusterops-ts-certs-"));
  const script = [
    "import sys",
    "from pathlib import Path",
    "from tests.certs import Authority",
    "d = Path(sys.argv[1])",
    "ca = Authority(d, 'test')",
    "server = ca.issue('server', server=True)",
    "client = ca.issue('client', server=False)",
    "Authority(d, 'other')",
    "print(ca.path, server.cert, server.key, client.cert, client.key, sep='\\n')",
  ].join("\n");
  const { stdout } = await promisify(execFile)(PYTHON, ["-c", script, directory], { cwd: ROOT });
  const [caPath, serverCert, serverKey, clientCert, clientKey] = stdout.trim().split("\n") as [
    string,
    string,
    string,
    string,
    string,
  ];
  return {
    directory,
    caPem: await readFile(caPath, "utf8"),
    caPath,
    serverCert,
    serverKey,
    clientCertPem: await readFile(clientCert, "utf8"),
    clientKeyPem: await readFile(clientKey, "utf8"),
    otherCaPem: await readFile(join(directory, "other-ca.pem"), "utf8"),
  };
}

/** An --auth-config file: token "admin-token" may do anything, "reader-token" only read dev. */
export async function writeAuthConfig(directory: string): Promise<string> {
  const path = join(directory, "auth.json");
  const config = {
    principals: [
      { name: "admin", groups: ["Admins"], token: "admin-token" },
      { name: "reader", groups: ["DevReaders"], token: "reader-token" },
    ],
    policies: [
      "allow group Admins to manage all-resources in tenancy",
      "allow group DevReaders to read clusters in compartment dev",
    ],
  };
  await writeFile(path, JSON.stringify(config));
  return path;
}

/** A short unique suffix for names the tests create. */
export function suffix(): string {
  return Math.random().toString(16).slice(2, 8);
}

/** Every value of an async iterable (Array.fromAsync arrives with Node 22). */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const values: T[] = [];
  for await (const value of iterable) values.push(value);
  return values;
}
