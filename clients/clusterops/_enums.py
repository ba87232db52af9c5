"""Enum arguments as plain Python: a name ("SUCCEEDED", "succeeded" or the full proto name)
or the generated enum value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

V = TypeVar("V", bound=int)

EnumArg = str | int
"""An enum given by name, short ("SUCCEEDED") or full ("WORK_REQUEST_STATUS_SUCCEEDED"),
or by the generated value (`work_requests_pb2.WORK_REQUEST_STATUS_SUCCEEDED`)."""


def _prefix(wrapper: _EnumTypeWrapper[V]) -> str:
    # Every enum of the API has a <PREFIX>_UNSPECIFIED zero.
    return wrapper.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")


def enum_value(wrapper: _EnumTypeWrapper[V], value: EnumArg, *, argument: str) -> V:
    """The generated value for a name or value; ValueError names the choices."""
    prefix = _prefix(wrapper)
    if isinstance(value, int):
        known = wrapper.DESCRIPTOR.values_by_number.get(value)
        if known is not None and value != 0:
            return wrapper.Value(known.name)
    else:
        name = value.strip().upper().replace("-", "_")
        full = name if name.startswith(prefix) else prefix + name
        names = wrapper.keys()
        if full in names and not full.endswith("_UNSPECIFIED"):
            return wrapper.Value(full)
    raise ValueError(f"{argument}: {value!r} is not one of {', '.join(enum_choices(wrapper))}")


def enum_values(
    wrapper: _EnumTypeWrapper[V], values: Iterable[EnumArg], *, argument: str
) -> list[V]:
    return [enum_value(wrapper, v, argument=argument) for v in values]


def enum_choices(wrapper: _EnumTypeWrapper[V]) -> list[str]:
    """The short names a caller may pass, e.g. ["ACCEPTED", "IN_PROGRESS", ...]."""
    prefix = _prefix(wrapper)
    names = wrapper.keys()
    return [k.removeprefix(prefix) for k in names if not k.endswith("_UNSPECIFIED")]


def enum_name(wrapper: _EnumTypeWrapper[V], value: int) -> str:
    """The short name of a value ("SUCCEEDED"); an unknown value prints as its number."""
    known = wrapper.DESCRIPTOR.values_by_number.get(value)
    return str(value) if known is None else known.name.removeprefix(_prefix(wrapper))
