"""Domain errors. Each carries the gRPC status it maps to and the details a caller needs.

The wire layer turns them into a google.rpc.Status with ErrorInfo, BadRequest,
PreconditionFailure and ResourceInfo details in one place; nothing else catches them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import grpc

MAX_CHOICES_LISTED = 8


def one_of(choices: Iterable[str], limit: int = MAX_CHOICES_LISTED) -> str:
    """Allowed values for an error's description, shortened: an error must stay small."""
    listed = list(choices)
    if len(listed) <= limit:
        return ", ".join(listed)
    return f"{', '.join(listed[:limit])}, ... ({len(listed)} in all)"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


@dataclass(frozen=True)
class ResourceRef:
    resource_type: str
    resource_name: str


class DomainError(Exception):
    """An error the caller can act on."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.FAILED_PRECONDITION
    default_reason: ClassVar[str] = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        resource: ResourceRef | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.resource = resource

    @property
    def explanation(self) -> str:
        """The reason as a sentence for a person reading it away from the call that was
        refused (an operation's description, a log line)."""
        return self.message


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Iterable[FieldViolation],
        message: str | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or f"invalid request: {summary}", reason=reason)

    @classmethod
    def one(cls, field_path: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_path, description)])

    @property
    def explanation(self) -> str:
        """What is wrong, without the request-validation framing ("invalid request: field:")."""
        return "; ".join(v.description for v in self.violations) or self.message


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "RESOURCE_NOT_FOUND"

    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(
            f"{resource_type} {resource_id!r} was not found",
            resource=ResourceRef(resource_type, resource_id),
            metadata={"resource_type": resource_type, "resource_id": resource_id},
        )


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "RESOURCE_EXISTS"

    def __init__(self, resource_type: str, resource_id: str, message: str) -> None:
        super().__init__(
            message,
            resource=ResourceRef(resource_type, resource_id),
            metadata={"resource_type": resource_type, "resource_id": resource_id},
        )


class ResourceBusy(DomainError):
    """A resource already has a non-terminal work request (OKE's conflict)."""

    code = grpc.StatusCode.ABORTED
    default_reason = "RESOURCE_BUSY"

    def __init__(self, resource_id: str, blocking_work_request_id: str) -> None:
        super().__init__(
            f"resource {resource_id} already has work request {blocking_work_request_id} "
            "in progress; wait for it to finish or cancel it, then retry",
            metadata={
                "resource_id": resource_id,
                "blocking_work_request_id": blocking_work_request_id,
            },
        )
        self.resource_id = resource_id
        self.blocking_work_request_id = blocking_work_request_id


class EtagMismatch(DomainError):
    code = grpc.StatusCode.ABORTED
    default_reason = "ETAG_MISMATCH"

    def __init__(self, resource_type: str, resource_id: str, current_etag: str) -> None:
        super().__init__(
            f"the etag does not match {resource_type} {resource_id}: it was changed since "
            "you read it; read it again and retry",
            resource=ResourceRef(resource_type, resource_id),
            metadata={"current_etag": current_etag},
        )


class ConcurrentChange(DomainError):
    """Another request changed the resource while this one was being served."""

    code = grpc.StatusCode.ABORTED
    default_reason = "CONCURRENT_CHANGE"

    def __init__(self, resource_type: str, resource_id: str, what: str) -> None:
        super().__init__(
            f"{resource_type} {resource_id} changed while this request was being served "
            f"({what}); read it again and retry",
            resource=ResourceRef(resource_type, resource_id),
        )


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        violation_type: str,
        subject: str,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason or violation_type, metadata=metadata)
        self.violations = [PreconditionViolation(violation_type, subject, message)]


class OutOfRange(DomainError):
    code = grpc.StatusCode.OUT_OF_RANGE
    default_reason = "REVISION_OUT_OF_RANGE"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Unavailable(DomainError):
    """The server cannot serve this now; the call is safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"
