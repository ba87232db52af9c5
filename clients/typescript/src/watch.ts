/**
 * Following a work request's watch stream across dropped connections and server restarts,
 * as the Python SDK does (clients/clusterops/_watch.py).
 *
 * `follow` yields each event exactly once, in revision order, and ends after the terminal
 * event. Unavailable (a dropped connection, a server shutting down or restarting) is
 * answered by reconnecting with `afterRevision` = the last revision seen, after a
 * backoff; OutOfRange (history compacted) by a fresh watch, whose first event is a
 * SNAPSHOT of the whole work request. Everything else is thrown. An overall deadline
 * bounds the whole of it.
 */

import type { CallOptions } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  WatchEventType,
  type WatchWorkRequestRequestSchema,
  type WatchWorkRequestResponse,
  type WorkRequest,
  WorkRequestStatus,
} from "./gen/clusterops/v1/work_requests_pb.js";
import { Cancelled, DeadlineExceeded, OutOfRange, Unavailable } from "./errors.js";

/** How watches and waits reconnect: exponential backoff with jitter, until the deadline. */
export interface ReconnectPolicy {
  /** Failed attempts in a row after which the error is thrown; default: unlimited. */
  readonly maxAttempts?: number | undefined;
  /** Default 200 ms. */
  readonly initialBackoffMs?: number | undefined;
  /** Default 5000 ms. */
  readonly maxBackoffMs?: number | undefined;
  /** Default 2. */
  readonly multiplier?: number | undefined;
  /** Each delay is drawn from [delay * (1 - jitter), delay]; default 0.5. */
  readonly jitter?: number | undefined;
}

/** What a watch reports as it reconnects (for a program that shows it). */
export interface ReconnectEvent {
  /** "reconnect": resuming after `revision`; "restart": from a fresh snapshot. */
  readonly action: "reconnect" | "restart";
  readonly workRequestId: string;
  readonly revision: bigint;
  /** Failures in a row so far (0 for a restart). */
  readonly attempt: number;
  readonly delayMs: number;
  readonly error: Error;
}

export interface WatchOptions {
  /** Resume after this revision (0, the default: start with a snapshot). */
  readonly afterRevision?: bigint | undefined;
  /** Overall limit in milliseconds across reconnections; none by default. */
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly headers?: CallOptions["headers"] | undefined;
  readonly reconnect?: ReconnectPolicy | undefined;
  readonly onReconnect?: ((event: ReconnectEvent) => void) | undefined;
}

/** The work request's id, given as the id, the work request, or a response that holds one. */
export type WorkRequestRef =
  string | { readonly id: string } | { readonly workRequest?: { readonly id: string } | undefined };

export function workRequestId(ref: WorkRequestRef): string {
  if (typeof ref === "string") {
    return ref;
  }
  if ("id" in ref) {
    return ref.id;
  }
  if (ref.workRequest) {
    return ref.workRequest.id;
  }
  throw new TypeError("no work request: the response carries none");
}

const TERMINAL: ReadonlySet<WorkRequestStatus> = new Set([
  WorkRequestStatus.SUCCEEDED,
  WorkRequestStatus.FAILED,
  WorkRequestStatus.CANCELED,
]);

/** Whether the work request has finished (SUCCEEDED, FAILED or CANCELED). */
export function isTerminal(workRequest: WorkRequest | undefined): boolean {
  return workRequest !== undefined && TERMINAL.has(workRequest.status);
}

type WatchCall = (
  request: MessageInitShape<typeof WatchWorkRequestRequestSchema>,
  options?: CallOptions,
) => AsyncIterable<WatchWorkRequestResponse>;

export async function* follow(
  watch: WatchCall,
  id: string,
  options: WatchOptions = {},
): AsyncGenerator<WatchWorkRequestResponse, void, undefined> {
  const policy = reconnectPolicy(options.reconnect);
  const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
  let cursor = options.afterRevision ?? 0n;
  let failures = 0;
  for (;;) {
    const request = { workRequestId: id, afterRevision: cursor };
    try {
      const remaining = deadline === undefined ? 0 : Math.max(1, deadline - Date.now());
      const callOptions: CallOptions = { timeoutMs: remaining };
      if (options.signal) callOptions.signal = options.signal;
      if (options.headers) callOptions.headers = options.headers;
      for await (const event of watch(request, callOptions)) {
        if (event.eventType === WatchEventType.CHANGE && event.revision <= cursor) {
          continue; // already delivered before a reconnect
        }
        cursor = event.revision;
        failures = 0;
        yield event;
        if (isTerminal(event.workRequest)) {
          return;
        }
      }
      return; // resumed at or after the terminal change: nothing more will come
    } catch (error) {
      if (error instanceof Unavailable) {
        failures += 1;
        const delayMs = backoff(policy, failures);
        const allowed = deadline === undefined || Date.now() + delayMs < deadline;
        if (failures >= policy.maxAttempts || !allowed || options.signal?.aborted) {
          throw error;
        }
        options.onReconnect?.({
          action: "reconnect",
          workRequestId: id,
          revision: cursor,
          attempt: failures,
          delayMs,
          error,
        });
        await sleep(delayMs, options.signal);
      } else if (error instanceof OutOfRange && cursor !== 0n) {
        options.onReconnect?.({
          action: "restart",
          workRequestId: id,
          revision: cursor,
          attempt: 0,
          delayMs: 0,
          error,
        });
        cursor = 0n; // the history is gone: start again from the current state
      } else if (
        error instanceof DeadlineExceeded &&
        deadline !== undefined &&
        Date.now() >= deadline
      ) {
        throw new DeadlineExceeded(
          `work request ${id} did not finish in time (last revision seen: ${cursor})`,
          {
            reason: "WAIT_TIMEOUT",
            metadata: { work_request_id: id, revision: String(cursor) },
            cause: error,
          },
        );
      } else {
        throw error;
      }
    }
  }
}

type Policy = { readonly [K in keyof ReconnectPolicy]-?: number };

function reconnectPolicy(given: ReconnectPolicy = {}): Policy {
  return {
    maxAttempts: given.maxAttempts ?? Number.POSITIVE_INFINITY,
    initialBackoffMs: given.initialBackoffMs ?? 200,
    maxBackoffMs: given.maxBackoffMs ?? 5_000,
    multiplier: given.multiplier ?? 2,
    jitter: given.jitter ?? 0.5,
  };
}

function backoff(policy: Policy, failures: number): number {
  const ceiling = Math.min(
    policy.maxBackoffMs,
    policy.initialBackoffMs * policy.multiplier ** Math.max(0, failures - 1),
  );
  return ceiling * (1 - policy.jitter * Math.random());
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = (): void => {
      clearTimeout(timer);
      reject(new Cancelled("the watch was aborted", { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }, ms);
    signal?.addEventListener("abort", aborted, { once: true });
  });
}
