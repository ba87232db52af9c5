"""Typed exceptions: one class per gRPC status code, with the server's rich details decoded.

`error_from_rpc` is the only place a transport error becomes an SDK error; the
transport calls it for every failed RPC and raises the result `from` the original.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import grpc
from google.protobuf import any_pb2

from clusterops.v1 import work_requests_pb2 as wr_pb

_DETAILS_KEY = "grpc-status-details-bin"

# googleapis-common-protos ships .pyi files without a py.typed marker, so mypy refuses to
# read google.rpc in a user's project (import-untyped). The SDK loads those modules at
# run time and types what it reads from them itself (the protocols at the end).
_status_pb2 = importlib.import_module("google.rpc.status_pb2")
_error_details_pb2 = importlib.import_module("google.rpc.error_details_pb2")


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition (google.rpc.PreconditionFailure)."""

    type: str
    subject: str
    description: str


class ClusteropsError(Exception):
    """An RPC failed. Subclasses name the gRPC status code; `code` holds it either way."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        code: grpc.StatusCode | None = None,
        field_violations: Sequence[FieldViolation] = (),
        precondition_violations: Sequence[PreconditionViolation] = (),
        resource_type: str = "",
        resource_name: str = "",
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        # The machine-readable google.rpc.ErrorInfo reason, e.g. "RESOURCE_BUSY".
        self.reason = reason or self.code.name
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.precondition_violations: tuple[PreconditionViolation, ...] = tuple(
            precondition_violations
        )
        self.resource_type = resource_type
        self.resource_name = resource_name

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(ClusteropsError):
    """The request was malformed; `field_violations` names each bad field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ClusteropsError):
    """The resource does not exist; `resource_type` and `resource_name` say which."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ClusteropsError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(ClusteropsError):
    """The call lost to a concurrent change; read again and retry."""

    code = grpc.StatusCode.ABORTED


class Conflict(Aborted):
    """The resource already has a work request in progress (reason RESOURCE_BUSY)."""

    @property
    def blocking_work_request_id(self) -> str:
        return self.metadata.get("blocking_work_request_id", "")

    @property
    def resource_id(self) -> str:
        return self.metadata.get("resource_id", "")


class EtagMismatch(Aborted):
    """The etag given is stale (reason ETAG_MISMATCH)."""

    @property
    def current_etag(self) -> str:
        return self.metadata.get("current_etag", "")


class FailedPrecondition(ClusteropsError):
    """The resource is in the wrong state; `precondition_violations` says which."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(ClusteropsError):
    """For example a watch revision that can no longer be resumed."""

    code = grpc.StatusCode.OUT_OF_RANGE


class PermissionDenied(ClusteropsError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ClusteropsError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(ClusteropsError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ClusteropsError):
    """The server could not be reached or is shutting down; safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ClusteropsError):
    """The call, or a wait, ran out of time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ClusteropsError):
    code = grpc.StatusCode.CANCELLED


class Unimplemented(ClusteropsError):
    """The server does not offer this RPC (yet)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ClusteropsError):
    code = grpc.StatusCode.INTERNAL


class OperationError(Exception):
    """A work request ended without succeeding; `work_request` is its terminal state."""

    def __init__(self, message: str, work_request: wr_pb.WorkRequest) -> None:
        super().__init__(message)
        self.message = message
        self.work_request = work_request


class OperationFailed(OperationError):
    """The work request FAILED; `errors` are the errors it recorded."""

    def __init__(
        self, work_request: wr_pb.WorkRequest, errors: Sequence[wr_pb.WorkRequestError]
    ) -> None:
        summary = "; ".join(f"{e.code}: {e.message}" for e in errors) or "no error recorded"
        super().__init__(f"work request {work_request.id} failed: {summary}", work_request)
        self.errors: tuple[wr_pb.WorkRequestError, ...] = tuple(errors)


class OperationCanceled(OperationError):
    """The work request was CANCELED."""

    def __init__(self, work_request: wr_pb.WorkRequest) -> None:
        super().__init__(f"work request {work_request.id} was canceled", work_request)


_BY_CODE: dict[grpc.StatusCode, type[ClusteropsError]] = {
    cls.code: cls
    for cls in (
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
    )
}
_ABORTED_BY_REASON: dict[str, type[ClusteropsError]] = {
    "RESOURCE_BUSY": Conflict,
    "ETAG_MISMATCH": EtagMismatch,
}


class _FailedCall(Protocol):
    """What grpc.aio.AioRpcError and a failed sync grpc.Call both offer."""

    def code(self) -> grpc.StatusCode: ...
    def details(self) -> str | None: ...
    def trailing_metadata(self) -> Any: ...


def error_from_rpc(error: grpc.RpcError) -> ClusteropsError:
    """The typed exception for a failed call (raise it `from` the original)."""
    if not all(hasattr(error, name) for name in ("code", "details", "trailing_metadata")):
        return ClusteropsError(str(error) or "the call failed", code=grpc.StatusCode.UNKNOWN)
    call = cast(_FailedCall, error)
    code = call.code()
    fields: dict[str, Any] = {"reason": "", "metadata": {}}
    for key, value in call.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            fields.update(_decode_details(value))
    cls = _BY_CODE.get(code, ClusteropsError)
    if code == grpc.StatusCode.ABORTED:
        cls = _ABORTED_BY_REASON.get(fields["reason"], Aborted)
    message = call.details() or code.name.lower().replace("_", " ")
    return cls(message, code=code, **fields)


def _decode_details(blob: bytes) -> dict[str, Any]:
    status: _Status = _status_pb2.Status.FromString(blob)
    found: dict[str, Any] = {}
    for packed in status.details:
        info: _ErrorInfo | None = _unpack(packed, "ErrorInfo")
        bad: _BadRequest | None = _unpack(packed, "BadRequest")
        failure: _PreconditionFailure | None = _unpack(packed, "PreconditionFailure")
        resource: _ResourceInfo | None = _unpack(packed, "ResourceInfo")
        if info is not None:
            found["reason"] = info.reason
            found["metadata"] = dict(info.metadata)
        elif bad is not None:
            found["field_violations"] = [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
        elif failure is not None:
            found["precondition_violations"] = [
                PreconditionViolation(v.type, v.subject, v.description) for v in failure.violations
            ]
        elif resource is not None:
            found["resource_type"] = resource.resource_type
            found["resource_name"] = resource.resource_name
    return found


def _unpack(packed: any_pb2.Any, name: str) -> Any:
    """The detail as google.rpc's message `name`, or None if it holds another kind."""
    kind = getattr(_error_details_pb2, name)
    if not packed.Is(kind.DESCRIPTOR):
        return None
    message = kind()
    packed.Unpack(message)
    return message


# What the SDK reads of google.rpc's messages.


class _Status(Protocol):
    @property
    def details(self) -> Sequence[any_pb2.Any]: ...


class _ErrorInfo(Protocol):
    @property
    def reason(self) -> str: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


class _FieldViolation(Protocol):
    @property
    def field(self) -> str: ...
    @property
    def description(self) -> str: ...


class _BadRequest(Protocol):
    @property
    def field_violations(self) -> Sequence[_FieldViolation]: ...


class _PreconditionViolation(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def description(self) -> str: ...


class _PreconditionFailure(Protocol):
    @property
    def violations(self) -> Sequence[_PreconditionViolation]: ...


class _ResourceInfo(Protocol):
    @property
    def resource_type(self) -> str: ...
    @property
    def resource_name(self) -> str: ...
