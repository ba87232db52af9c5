"""The AIP-160 filter subset: what parses, what is refused, and that nothing crashes."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from clusterops_server.domain.errors import InvalidArgument
from clusterops_server.domain.filtering import (
    MAX_FILTER_DEPTH,
    AllOf,
    AnyOf,
    Comparison,
    FieldKind,
    FilterField,
    Negation,
    parse_filter,
)
from hypothesis import given
from hypothesis import strategies as st

FIELDS = {
    "name": FilterField(FieldKind.STRING),
    "status": FilterField(FieldKind.ENUM, frozenset({"ACTIVE", "FAILED"}), "STATE_"),
    "created": FilterField(FieldKind.TIMESTAMP),
    "percent": FilterField(FieldKind.NUMBER),
}


def test_or_binds_tighter_than_and() -> None:
    parsed = parse_filter('name = "a" AND status = ACTIVE OR status = STATE_FAILED', FIELDS)
    assert parsed == AllOf(
        (
            Comparison("name", "=", "a"),
            AnyOf((Comparison("status", "=", "ACTIVE"), Comparison("status", "=", "FAILED"))),
        )
    )


def test_values_are_typed() -> None:
    parsed = parse_filter('created >= "2026-01-02T03:04:05Z" AND NOT percent < 50', FIELDS)
    assert parsed == AllOf(
        (
            Comparison("created", ">=", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
            Negation(Comparison("percent", "<", 50.0)),
        )
    )


def test_empty_filter_is_none() -> None:
    assert parse_filter("   ", FIELDS) is None


@pytest.mark.parametrize(
    "text",
    [
        "colour = red",
        "name",
        "name =",
        "name > a",
        "status = SOMETIMES",
        "(name = a",
        "name = a name = b",
        'created > "2026-01-02"',
        "percent = lots",
        "AND",
        "name = a AND",
        "name ~ a",
        "x" * 3000,
        "(" * 300 + "name = a" + ")" * 300,
    ],
)
def test_malformed_filters_are_invalid_argument_on_the_filter_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        parse_filter(text, FIELDS)
    assert [v.field for v in bad.value.violations] == ["filter"]


def test_parentheses_nest_up_to_the_documented_depth() -> None:
    deepest = "(" * MAX_FILTER_DEPTH + "name = a" + ")" * MAX_FILTER_DEPTH
    assert parse_filter(deepest, FIELDS) == parse_filter("name = a", FIELDS)
    with pytest.raises(InvalidArgument, match="nest"):
        parse_filter("(" + deepest + ")", FIELDS)


@given(st.text(max_size=200))
def test_any_text_either_parses_or_is_invalid_argument(text: str) -> None:
    with contextlib.suppress(InvalidArgument):
        parse_filter(text, FIELDS)
