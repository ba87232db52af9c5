"""Hypothesis strategies that build arbitrary protobuf messages from their descriptors."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 3


def _scalar(field: FieldDescriptor, strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=20)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        # Known values, UNSPECIFIED and numbers the enum does not define.
        assert field.enum_type is not None
        return st.integers(-3, max(v.number for v in field.enum_type.values) + 3)
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return st.integers(-(2**63), 2**63 - 1)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    return st.integers(-(2**31), 2**31 - 1)


def field_values(
    descriptor: Descriptor, strings: st.SearchStrategy[str], depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    """Random values for any subset of a message's fields."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                key = field.message_type.fields_by_name["key"]
                value = field.message_type.fields_by_name["value"]
                optional[field.name] = st.dictionaries(
                    _scalar(key, strings), _scalar(value, strings), max_size=3
                )
                continue
            if depth >= MAX_DEPTH:
                continue
            nested = field_values(field.message_type, strings, depth + 1)
            single: st.SearchStrategy[Any] = nested
        else:
            single = _scalar(field, strings)
        optional[field.name] = st.lists(single, max_size=3) if field.is_repeated else single
    return st.fixed_dictionaries({}, optional=optional)


def build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = GetMessageClass(descriptor)()
    _fill(message, values)
    return message


def _fill(message: Message, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for k, v in value.items():
                target[k] = v
        elif field.message_type is not None:
            if field.is_repeated:
                for item in value:
                    _fill(target.add(), item)
            else:
                _fill(target, value)
                if not value:
                    target.SetInParent()
        elif field.is_repeated:
            target.extend(value)
        else:
            setattr(message, name, value)
