/**
 * `createClient`: one gRPC connection (HTTP/2, connect-node's gRPC transport) to a
 * clusterops server, one namespace per service.
 *
 * Each namespace is the generated service's connect client, every call going through
 * one choke point that turns failures into the typed errors of errors.ts. Every list
 * RPC `listX` also has `listXAsync`, a Pager over its items (the name Google's Node.js
 * clients give the same thing), and `workRequests` adds `watch`, `wait` and
 * `waitSucceeded`, which follow the watch stream across dropped connections.
 */

import type {
  DescMethod,
  DescMethodUnary,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import {
  type CallOptions,
  type Client,
  createClient as createConnectClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { SecureClientSessionOptions } from "node:http2";
import { AddonService } from "./gen/clusterops/v1/addons_pb.js";
import { ClusterService } from "./gen/clusterops/v1/clusters_pb.js";
import { NotificationService } from "./gen/clusterops/v1/notifications_pb.js";
import { OrchestrationService } from "./gen/clusterops/v1/orchestrations_pb.js";
import { SimulatorService } from "./gen/clusterops/v1/simulator_pb.js";
import { UpgradeWorkflowService } from "./gen/clusterops/v1/upgrade_workflows_pb.js";
import {
  type WatchWorkRequestResponse,
  type WorkRequest,
  type WorkRequestError,
  WorkRequestService,
  WorkRequestStatus,
} from "./gen/clusterops/v1/work_requests_pb.js";
import { errorFrom, OperationCanceled, OperationFailed } from "./errors.js";
import { Pager } from "./pager.js";
import { follow, type WatchOptions, type WorkRequestRef, workRequestId } from "./watch.js";

/** TLS for an https:// server: a private CA, and a client certificate for mutual TLS. */
export interface TlsOptions {
  /** PEM CA certificate(s) to trust instead of the system's roots. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[] | undefined;
  /** PEM client certificate chain and key, for a server that asks for one. */
  readonly cert?: string | Buffer | undefined;
  readonly key?: string | Buffer | undefined;
  /** The name the server's certificate must carry, when not the host of `baseUrl`. */
  readonly serverName?: string | undefined;
}

export interface ClientOptions {
  /**
   * The server: "http://host:port", "https://host:port", or "host:port" (https when
   * `tls` is given, else http).
   */
  readonly baseUrl: string;
  /** A bearer token, sent as `authorization: Bearer <token>` with every call. */
  readonly token?: string | undefined;
  /** TLS settings, or true for the system's trusted roots. */
  readonly tls?: TlsOptions | boolean | undefined;
  /**
   * Default deadline of each unary call in milliseconds (default 30 s; 0: none). Streams
   * have none unless the call gives its own `timeoutMs`.
   */
  readonly defaultTimeoutMs?: number | undefined;
  /** connect interceptors, run on every call after the client's own. */
  readonly interceptors?: readonly Interceptor[] | undefined;
}

/** The list RPCs of a service: unary, with a pageToken in and a nextPageToken out. */
type PagedMethods<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends DescMethodUnary<infer I, infer O>
    ? MessageShape<I> extends { pageToken: string }
      ? MessageShape<O> extends { nextPageToken: string }
        ? K
        : never
      : never
    : never;
}[keyof S["method"]];

/** The element type of a list response's repeated field. */
export type ItemOf<R> = {
  [K in Exclude<keyof R, `$${string}`>]: R[K] extends readonly (infer T)[] ? T : never;
}[Exclude<keyof R, `$${string}`>];

/** `listXAsync(request)`: a Pager over the items of every page of `listX`. */
export type Pagers<S extends DescService> = {
  [K in PagedMethods<S> & string as `${K}Async`]: S["method"][K] extends DescMethodUnary<
    infer I,
    infer O
  >
    ? (
        request: MessageInitShape<I>,
        options?: CallOptions,
      ) => Pager<ItemOf<MessageShape<O>>, MessageShape<O>>
    : never;
};

/** One service's namespace: its RPCs as the generated descriptor types them, and pagers. */
export type ServiceClient<S extends DescService> = Client<S> & Pagers<S>;

export interface WaitOptions extends WatchOptions {
  /** Called with each watch event exactly once (percent complete, new logs and errors). */
  readonly onEvent?: ((event: WatchWorkRequestResponse) => void | Promise<void>) | undefined;
}

/** Work requests, and following one to its end. */
export interface WorkRequestsClient extends ServiceClient<typeof WorkRequestService> {
  /**
   * The work request's events until it finishes: a SNAPSHOT first (unless resuming
   * after `afterRevision`), then each CHANGE exactly once, in revision order. A dropped
   * connection is resumed from the last revision seen.
   */
  watch(
    ref: WorkRequestRef,
    options?: WatchOptions,
  ): AsyncGenerator<WatchWorkRequestResponse, void, undefined>;
  /**
   * Follow the work request until it finishes and return it as it is then (SUCCEEDED,
   * FAILED or CANCELED: this does not throw for FAILED). Throws DeadlineExceeded (reason
   * WAIT_TIMEOUT) after `timeoutMs`.
   */
  wait(ref: WorkRequestRef, options?: WaitOptions): Promise<WorkRequest>;
  /** As wait(), but throws OperationFailed (with its errors) or OperationCanceled. */
  waitSucceeded(ref: WorkRequestRef, options?: WaitOptions): Promise<WorkRequest>;
}

export interface ClusteropsClient {
  readonly workRequests: WorkRequestsClient;
  readonly clusters: ServiceClient<typeof ClusterService>;
  readonly upgradeWorkflows: ServiceClient<typeof UpgradeWorkflowService>;
  readonly addons: ServiceClient<typeof AddonService>;
  readonly orchestrations: ServiceClient<typeof OrchestrationService>;
  readonly notifications: ServiceClient<typeof NotificationService>;
  /**
   * The simulated provider's controls (faults, step times, broken add-ons): only a server
   * running the simulated provider has them; any other answers Unimplemented.
   */
  readonly simulator: ServiceClient<typeof SimulatorService>;
  /** The transport every namespace uses, for other services on the same server. */
  readonly transport: Transport;
  /** Close the connection; calls in flight fail. */
  close(): void;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** A client of a clusterops server. */
export function createClient(options: ClientOptions): ClusteropsClient {
  const tls = options.tls === true ? {} : options.tls || undefined;
  const baseUrl = normalizeBaseUrl(options.baseUrl, tls !== undefined);
  const nodeOptions: SecureClientSessionOptions = {};
  if (tls !== undefined) {
    if (tls.ca !== undefined) nodeOptions.ca = tls.ca as string | Buffer | (string | Buffer)[];
    if (tls.cert !== undefined) nodeOptions.cert = tls.cert;
    if (tls.key !== undefined) nodeOptions.key = tls.key;
    if (tls.serverName !== undefined) nodeOptions.servername = tls.serverName;
  }
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    const authorization = `Bearer ${options.token}`;
    interceptors.push((next) => (request) => {
      request.header.set("authorization", authorization);
      return next(request);
    });
  }
  interceptors.push(...(options.interceptors ?? []));
  const sessionManager = new Http2SessionManager(baseUrl, {}, nodeOptions);
  const timeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    interceptors,
    // connect takes a default of 0 as a deadline already passed, not as none.
    ...(timeoutMs > 0 ? { defaultTimeoutMs: timeoutMs } : {}),
  });
  return {
    workRequests: workRequestsClient(transport),
    clusters: serviceClient(ClusterService, transport),
    upgradeWorkflows: serviceClient(UpgradeWorkflowService, transport),
    addons: serviceClient(AddonService, transport),
    orchestrations: serviceClient(OrchestrationService, transport),
    notifications: serviceClient(NotificationService, transport),
    simulator: serviceClient(SimulatorService, transport),
    transport,
    close: () => sessionManager.abort(),
  };
}

function normalizeBaseUrl(baseUrl: string, tls: boolean): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(baseUrl)) {
    return `${tls ? "https" : "http"}://${baseUrl}`;
  }
  const { protocol } = new URL(baseUrl);
  if (protocol !== "http:" && protocol !== "https:") {
    throw new TypeError(`baseUrl must be http:// or https://, not ${protocol}//`);
  }
  if (tls && protocol === "http:") {
    throw new TypeError("tls options need an https:// baseUrl");
  }
  return baseUrl;
}

type AnyCall = (request: unknown, options?: CallOptions) => unknown;

/** The service's connect client with every call's failures typed, plus its pagers. */
export function serviceClient<S extends DescService>(
  service: S,
  transport: Transport,
): ServiceClient<S> {
  const raw = createConnectClient(service, transport) as unknown as Record<string, AnyCall>;
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const call = raw[method.localName] as AnyCall;
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      const typed = async (request: unknown, options?: CallOptions): Promise<unknown> => {
        try {
          return await (call(request, options) as Promise<unknown>);
        } catch (error) {
          throw errorFrom(error, options?.signal);
        }
      };
      client[method.localName] = typed;
      const items = pagedItems(method);
      if (items !== undefined) {
        client[`${method.localName}Async`] = (request: object, options?: CallOptions) =>
          new Pager(
            async (pageToken: string) => {
              const response = (await typed({ ...request, pageToken }, options)) as Record<
                string,
                unknown
              >;
              return {
                items: response[items] as unknown[],
                nextPageToken: response["nextPageToken"] as string,
                response,
              };
            },
            (request as { pageToken?: string }).pageToken ?? "",
          );
      }
    } else {
      client[method.localName] = (request: unknown, options?: CallOptions) =>
        typedStream(
          // defaultTimeoutMs is for unary calls: a stream lasts until it is done.
          (signal) =>
            call(request, {
              ...options,
              timeoutMs: options?.timeoutMs ?? 0,
              signal,
            }) as AsyncIterable<unknown>,
          options?.signal,
        );
    }
  }
  return client as ServiceClient<S>;
}

/**
 * The stream's messages, its failures typed. A consumer that stops early cancels the call:
 * connect's message iterator has no return(), so without this the call would stay open
 * and its deadline timer would keep the process alive until it fired.
 */
async function* typedStream<T>(
  open: (signal: AbortSignal) => AsyncIterable<T>,
  signal: AbortSignal | undefined,
): AsyncGenerator<T, void, undefined> {
  const controller = new AbortController();
  const messages = open(signal ? AbortSignal.any([signal, controller.signal]) : controller.signal)[
    Symbol.asyncIterator
  ]();
  let finished = false;
  try {
    for (;;) {
      const result = await messages.next();
      if (result.done) {
        finished = true;
        return;
      }
      yield result.value;
    }
  } catch (error) {
    finished = true;
    throw errorFrom(error, signal);
  } finally {
    if (!finished) {
      controller.abort();
      await messages.next().catch(() => undefined); // lets connect clean up the call
    }
  }
}

/** The local name of a list response's items field, if the method is a paged list. */
function pagedItems(method: DescMethod): string | undefined {
  if (method.methodKind !== "unary") return undefined;
  const hasToken = method.input.fields.some((f) => f.localName === "pageToken");
  const hasNext = method.output.fields.some((f) => f.localName === "nextPageToken");
  const lists = method.output.fields.filter((f) => f.fieldKind === "list");
  return hasToken && hasNext && lists.length === 1 ? lists[0]?.localName : undefined;
}

function workRequestsClient(transport: Transport): WorkRequestsClient {
  const base = serviceClient(WorkRequestService, transport);
  const watch: WorkRequestsClient["watch"] = (ref, options) =>
    follow(base.watchWorkRequest, workRequestId(ref), options);
  const wait: WorkRequestsClient["wait"] = async (ref, options = {}) => {
    const id = workRequestId(ref);
    for await (const event of watch(id, options)) {
      await options.onEvent?.(event);
    }
    // A CHANGE event carries only the resources it altered: read the whole record.
    const { workRequest } = await base.getWorkRequest({ workRequestId: id }, callOptions(options));
    return workRequest as WorkRequest;
  };
  const waitSucceeded: WorkRequestsClient["waitSucceeded"] = async (ref, options = {}) => {
    const workRequest = await wait(ref, options);
    if (workRequest.status === WorkRequestStatus.FAILED) {
      const errors: WorkRequestError[] = await base
        .listWorkRequestErrorsAsync({ workRequestId: workRequest.id }, callOptions(options))
        .toArray();
      throw new OperationFailed(workRequest, errors);
    }
    if (workRequest.status === WorkRequestStatus.CANCELED) {
      throw new OperationCanceled(workRequest);
    }
    return workRequest;
  };
  return Object.assign(base, { watch, wait, waitSucceeded });
}

function callOptions(options: WatchOptions): CallOptions {
  const call: CallOptions = {};
  if (options.signal) call.signal = options.signal;
  if (options.headers) call.headers = options.headers;
  return call;
}
