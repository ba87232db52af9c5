/**
 * Typed errors: one class per gRPC status code, with the server's google.rpc details
 * decoded. The classes and their fields are the Python SDK's (clients/clusterops/_errors.py).
 *
 * `errorFrom` is the only place a transport error becomes a client error: the client
 * calls it for every failed RPC and keeps the original as `cause`.
 */

import { Code, ConnectError, decodeBinaryHeader } from "@connectrpc/connect";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { WorkRequest, WorkRequestError } from "./gen/clusterops/v1/work_requests_pb.js";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";

export { Code };

const DETAILS_TRAILER = "grpc-status-details-bin";

/** One bad field of a request (google.rpc.BadRequest). */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** One unmet precondition (google.rpc.PreconditionFailure). */
export interface PreconditionViolation {
  readonly type: string;
  readonly subject: string;
  readonly description: string;
}

/** What an error carries besides its message; all of it optional. */
export interface ErrorFields {
  /** The status code, for a ClusteropsError built directly; subclasses know theirs. */
  readonly code?: Code;
  /** The machine-readable google.rpc.ErrorInfo reason, e.g. "RESOURCE_BUSY". */
  readonly reason?: string;
  /** google.rpc.ErrorInfo metadata, e.g. { blocking_work_request_id: "wr-..." }. */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly fieldViolations?: readonly FieldViolation[];
  readonly preconditionViolations?: readonly PreconditionViolation[];
  readonly resourceType?: string;
  readonly resourceName?: string;
  readonly cause?: unknown;
}

/** An RPC failed. Subclasses name the gRPC status code; `code` holds it either way. */
export class ClusteropsError extends Error {
  static readonly code: Code = Code.Unknown;

  readonly code: Code;
  readonly reason: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly fieldViolations: readonly FieldViolation[];
  readonly preconditionViolations: readonly PreconditionViolation[];
  readonly resourceType: string;
  readonly resourceName: string;

  constructor(message: string, fields: ErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.code = fields.code ?? (new.target as typeof ClusteropsError).code;
    this.reason = fields.reason || codeName(this.code);
    this.metadata = { ...fields.metadata };
    this.fieldViolations = [...(fields.fieldViolations ?? [])];
    this.preconditionViolations = [...(fields.preconditionViolations ?? [])];
    this.resourceType = fields.resourceType ?? "";
    this.resourceName = fields.resourceName ?? "";
  }

  override toString(): string {
    return `${codeName(this.code)}: ${this.message}`;
  }
}

/** The request was malformed; `fieldViolations` names each bad field. */
export class InvalidArgument extends ClusteropsError {
  static override readonly code: Code = Code.InvalidArgument;
}

/** The resource does not exist; `resourceType` and `resourceName` say which. */
export class NotFound extends ClusteropsError {
  static override readonly code: Code = Code.NotFound;
}

export class AlreadyExists extends ClusteropsError {
  static override readonly code: Code = Code.AlreadyExists;
}

/** The call lost to a concurrent change; read again and retry. */
export class Aborted extends ClusteropsError {
  static override readonly code: Code = Code.Aborted;
}

/** The resource already has a work request in progress (reason RESOURCE_BUSY). */
export class Conflict extends Aborted {
  get blockingWorkRequestId(): string {
    return this.metadata["blocking_work_request_id"] ?? "";
  }

  get resourceId(): string {
    return this.metadata["resource_id"] ?? "";
  }
}

/** The etag given is stale (reason ETAG_MISMATCH). */
export class EtagMismatch extends Aborted {
  get currentEtag(): string {
    return this.metadata["current_etag"] ?? "";
  }
}

/** The resource is in the wrong state; `preconditionViolations` says which. */
export class FailedPrecondition extends ClusteropsError {
  static override readonly code: Code = Code.FailedPrecondition;
}

/** For example a watch revision that can no longer be resumed. */
export class OutOfRange extends ClusteropsError {
  static override readonly code: Code = Code.OutOfRange;
}

export class PermissionDenied extends ClusteropsError {
  static override readonly code: Code = Code.PermissionDenied;
}

export class Unauthenticated extends ClusteropsError {
  static override readonly code: Code = Code.Unauthenticated;
}

export class ResourceExhausted extends ClusteropsError {
  static override readonly code: Code = Code.ResourceExhausted;
}

/** The server could not be reached, the connection dropped, or it is shutting down. */
export class Unavailable extends ClusteropsError {
  static override readonly code: Code = Code.Unavailable;
}

/** The call, or a wait, ran out of time. */
export class DeadlineExceeded extends ClusteropsError {
  static override readonly code: Code = Code.DeadlineExceeded;
}

export class Cancelled extends ClusteropsError {
  static override readonly code: Code = Code.Canceled;
}

/** The server does not offer this RPC (yet). */
export class Unimplemented extends ClusteropsError {
  static override readonly code: Code = Code.Unimplemented;
}

export class Internal extends ClusteropsError {
  static override readonly code: Code = Code.Internal;
}

/** A work request ended without succeeding; `workRequest` is its terminal state. */
export class OperationError extends Error {
  readonly workRequest: WorkRequest;

  constructor(message: string, workRequest: WorkRequest) {
    super(message);
    this.name = new.target.name;
    this.workRequest = workRequest;
  }
}

/** The work request FAILED; `errors` are the errors it recorded. */
export class OperationFailed extends OperationError {
  readonly errors: readonly WorkRequestError[];

  constructor(workRequest: WorkRequest, errors: readonly WorkRequestError[]) {
    const summary = errors.map((e) => `${e.code}: ${e.message}`).join("; ") || "no error recorded";
    super(`work request ${workRequest.id} failed: ${summary}`, workRequest);
    this.errors = [...errors];
  }
}

/** The work request was CANCELED. */
export class OperationCanceled extends OperationError {
  constructor(workRequest: WorkRequest) {
    super(`work request ${workRequest.id} was canceled`, workRequest);
  }
}

const BY_CODE = new Map<Code, typeof ClusteropsError>(
  [
    InvalidArgument,
    NotFound,
    AlreadyExists,
    Aborted,
    FailedPrecondition,
    OutOfRange,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    Cancelled,
    Unimplemented,
    Internal,
  ].map((cls) => [cls.code, cls]),
);

const ABORTED_BY_REASON = new Map<string, typeof ClusteropsError>([
  ["RESOURCE_BUSY", Conflict],
  ["ETAG_MISMATCH", EtagMismatch],
]);

/**
 * The typed error for a failed call; the original is its `cause`. `signal` is the one the
 * caller gave the call, if any: a call it cancelled is Cancelled, not a lost connection.
 */
export function errorFrom(reason: unknown, signal?: AbortSignal): ClusteropsError {
  if (reason instanceof ClusteropsError) {
    return reason;
  }
  const error = ConnectError.from(reason);
  if (connectionLost(error, signal?.aborted === true)) {
    return new Unavailable(`connection lost: ${error.rawMessage}`, { cause: reason });
  }
  const fields = decodeDetails(error.metadata.get(DETAILS_TRAILER));
  let cls = BY_CODE.get(error.code) ?? ClusteropsError;
  if (error.code === Code.Aborted) {
    cls = ABORTED_BY_REASON.get(fields.reason ?? "") ?? Aborted;
  }
  const message = error.rawMessage || codeName(error.code).toLowerCase().replaceAll("_", " ");
  return new cls(message, { ...fields, code: error.code, cause: reason });
}

/**
 * Whether the call failed because the connection did, rather than by the server's answer.
 *
 * grpc's own clients report a dropped connection, a refused one or a failed TLS handshake
 * as UNAVAILABLE. connect-node reports a reset socket as ABORTED, the streams of an HTTP/2
 * session that closed under them as CANCELED, and a certificate it cannot verify as
 * INTERNAL. A status the server sent always comes with a grpc-status header or trailer,
 * so an error without one is the connection's if it is CANCELED without the caller
 * having cancelled, or was caused by a Node.js network, HTTP/2 or TLS error.
 */
function connectionLost(error: ConnectError, cancelledByCaller: boolean): boolean {
  if (error.metadata.has("grpc-status")) {
    return false;
  }
  if (error.code === Code.Unavailable) {
    return true;
  }
  if (error.code === Code.Canceled) {
    return !cancelledByCaller;
  }
  for (let cause: unknown = error.cause; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && CONNECTION_ERRORS.test(code)) {
      return true;
    }
  }
  return false;
}

// errno codes (ECONNRESET, EPIPE, ...), HTTP/2 session and stream errors, TLS failures.
const CONNECTION_ERRORS =
  /^(E[A-Z]+|ERR_HTTP2_\w+|ERR_STREAM_PREMATURE_CLOSE|ERR_STREAM_DESTROYED|ERR_TLS_\w+|ERR_SSL_\w+|UNABLE_TO_\w+|\w*CERT\w*)$/;

function decodeDetails(trailer: string | null): ErrorFields {
  if (trailer === null) {
    return {};
  }
  const found: {
    -readonly [K in keyof ErrorFields]: ErrorFields[K];
  } = {};
  let status;
  try {
    status = decodeBinaryHeader(trailer, StatusSchema);
  } catch {
    return {}; // a malformed trailer still leaves the status code and message
  }
  for (const detail of status.details) {
    const info = anyUnpack(detail, ErrorInfoSchema);
    const bad = anyUnpack(detail, BadRequestSchema);
    const failure = anyUnpack(detail, PreconditionFailureSchema);
    const resource = anyUnpack(detail, ResourceInfoSchema);
    if (info) {
      found.reason = info.reason;
      found.metadata = { ...info.metadata };
    } else if (bad) {
      found.fieldViolations = bad.fieldViolations.map((v) => ({
        field: v.field,
        description: v.description,
      }));
    } else if (failure) {
      found.preconditionViolations = failure.violations.map((v) => ({
        type: v.type,
        subject: v.subject,
        description: v.description,
      }));
    } else if (resource) {
      found.resourceType = resource.resourceType;
      found.resourceName = resource.resourceName;
    }
  }
  return found;
}

/** "INVALID_ARGUMENT" for Code.InvalidArgument: the name grpc and the server use. */
export function codeName(code: Code): string {
  if (code === Code.Canceled) {
    return "CANCELLED"; // grpc's spelling
  }
  return (Code[code] ?? "UNKNOWN").replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
}
