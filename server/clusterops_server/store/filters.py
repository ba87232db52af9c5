"""Compile a parsed AIP-160 filter into a SQL condition over a list's columns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_
from sqlalchemy.orm import InstrumentedAttribute

from clusterops_server.domain.filtering import AllOf, AnyOf, Comparison, Expression, Negation


def compile_filter(
    expression: Expression, columns: Mapping[str, InstrumentedAttribute[Any]]
) -> ColumnElement[bool]:
    if isinstance(expression, AllOf):
        return and_(*(compile_filter(p, columns) for p in expression.parts))
    if isinstance(expression, AnyOf):
        return or_(*(compile_filter(p, columns) for p in expression.parts))
    if isinstance(expression, Negation):
        return not_(compile_filter(expression.part, columns))
    return _comparison(expression, columns[expression.field])


def _comparison(c: Comparison, column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    value = c.value
    match c.op:
        case "=":
            return column == value
        case "!=":
            return column != value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case ">":
            return column > value
        case ">=":
            return column >= value
    raise ValueError(f"unknown operator {c.op}")
