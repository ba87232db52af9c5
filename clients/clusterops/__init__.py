"""The clusterops Python SDK: typed sync and asyncio clients of a clusterops server.

```
from clusterops import Client

with Client("localhost:50051") as client:
    for wr in client.work_requests.list(statuses=["IN_PROGRESS"]):
        print(wr.id, wr.percent_complete)
```

Results are the generated protobuf messages of `clusterops.v1` (re-exported here by
their short names); failed calls raise a `ClusteropsError` subclass per status code.
"""

from clusterops._client import DEFAULT_TIMEOUT, AsyncClient, Client
from clusterops._enums import EnumArg
from clusterops._errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ClusteropsError,
    Conflict,
    DeadlineExceeded,
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OperationCanceled,
    OperationError,
    OperationFailed,
    OutOfRange,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from clusterops._operation import AsyncOperation, Operation
from clusterops._options import DEFAULT, Metadata, Retry, Timeout, TLSConfig
from clusterops._orchestrations import Stage
from clusterops._pager import AsyncPager, Page
from clusterops._retry import NO_RETRY, RECONNECT, RetryPolicy
from clusterops._sync import Pager, SyncIterator
from clusterops._watch import is_terminal
from clusterops.v1.addons_pb2 import Addon, AddonOption
from clusterops.v1.clusters_pb2 import Cluster, Node, NodePool
from clusterops.v1.notifications_pb2 import Subscription
from clusterops.v1.orchestrations_pb2 import Orchestration, OrchestrationOperation
from clusterops.v1.simulator_pb2 import Fault
from clusterops.v1.upgrade_workflows_pb2 import KubernetesVersion, UpgradeWorkflow
from clusterops.v1.work_requests_pb2 import WatchWorkRequestResponse as WatchEvent
from clusterops.v1.work_requests_pb2 import WatchWorkRequestsResponse as WatchManyEvent
from clusterops.v1.work_requests_pb2 import WorkRequest, WorkRequestError, WorkRequestLogEntry

__all__ = [
    "DEFAULT",
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "RECONNECT",
    "Aborted",
    "Addon",
    "AddonOption",
    "AlreadyExists",
    "AsyncClient",
    "AsyncOperation",
    "AsyncPager",
    "Cancelled",
    "Client",
    "Cluster",
    "ClusteropsError",
    "Conflict",
    "DeadlineExceeded",
    "EnumArg",
    "EtagMismatch",
    "FailedPrecondition",
    "Fault",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "KubernetesVersion",
    "Metadata",
    "Node",
    "NodePool",
    "NotFound",
    "Operation",
    "OperationCanceled",
    "OperationError",
    "OperationFailed",
    "Orchestration",
    "OrchestrationOperation",
    "OutOfRange",
    "Page",
    "Pager",
    "PermissionDenied",
    "PreconditionViolation",
    "ResourceExhausted",
    "Retry",
    "RetryPolicy",
    "Stage",
    "Subscription",
    "SyncIterator",
    "TLSConfig",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UpgradeWorkflow",
    "WatchEvent",
    "WatchManyEvent",
    "WorkRequest",
    "WorkRequestError",
    "WorkRequestLogEntry",
    "is_terminal",
]
