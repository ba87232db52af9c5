/**
 * @clusterops/client: a TypeScript client of clusterops over gRPC.
 *
 * `createClient({ baseUrl, token, tls })` returns one namespace per service; messages,
 * enums and service descriptors are the code protoc-gen-es generated from protos/.
 */

export {
  createClient,
  serviceClient,
  type ClientOptions,
  type ClusteropsClient,
  type ItemOf,
  type Pagers,
  type ServiceClient,
  type TlsOptions,
  type WaitOptions,
  type WorkRequestsClient,
} from "./client.js";
export {
  Aborted,
  AlreadyExists,
  Cancelled,
  ClusteropsError,
  Code,
  codeName,
  Conflict,
  DeadlineExceeded,
  errorFrom,
  EtagMismatch,
  FailedPrecondition,
  Internal,
  InvalidArgument,
  NotFound,
  OperationCanceled,
  OperationError,
  OperationFailed,
  OutOfRange,
  PermissionDenied,
  ResourceExhausted,
  Unauthenticated,
  Unavailable,
  Unimplemented,
  type ErrorFields,
  type FieldViolation,
  type PreconditionViolation,
} from "./errors.js";
export { Pager, type Page } from "./pager.js";
export {
  isTerminal,
  type ReconnectEvent,
  type ReconnectPolicy,
  type WatchOptions,
  type WorkRequestRef,
} from "./watch.js";
export * from "./gen/clusterops/v1/addons_pb.js";
export * from "./gen/clusterops/v1/clusters_pb.js";
export * from "./gen/clusterops/v1/notifications_pb.js";
export * from "./gen/clusterops/v1/simulator_pb.js";
export * from "./gen/clusterops/v1/orchestrations_pb.js";
export * from "./gen/clusterops/v1/upgrade_workflows_pb.js";
export * from "./gen/clusterops/v1/work_requests_pb.js";
