"""A subset of AIP-160 filters, parsed into a small typed expression tree.

Grammar (keywords are upper case, as AIP-160 requires; OR binds tighter than AND):

    expression  := factor { "AND" factor }
    factor      := term { "OR" term }
    term        := [ "NOT" ] simple
    simple      := comparison | "(" expression ")"
    comparison  := FIELD ( "=" | "!=" | "<" | "<=" | ">" | ">=" | ":" ) VALUE
    VALUE       := "double-quoted string" | bare-word

Each list declares the fields it accepts and their kinds; values are checked and
converted while parsing, so the store only ever sees well-typed comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TypeAlias

from clusterops_server.domain.errors import InvalidArgument, one_of

MAX_FILTER_LENGTH = 2000
MAX_FILTER_TERMS = 50
# Parentheses nest at most this deep: the parser recurses once per level.
MAX_FILTER_DEPTH = 8


class FieldKind(Enum):
    STRING = "string"
    ENUM = "enum"
    TIMESTAMP = "timestamp"
    NUMBER = "number"


@dataclass(frozen=True)
class FilterField:
    kind: FieldKind
    # For ENUM fields: the accepted values (canonical spelling).
    choices: frozenset[str] = frozenset()
    # For ENUM fields: a prefix callers may put before a value (the proto enum prefix).
    enum_prefix: str = ""


FilterValue: TypeAlias = str | float | datetime


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: FilterValue


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Expression, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Expression, ...]


@dataclass(frozen=True)
class Negation:
    part: Expression


Expression: TypeAlias = "Comparison | AllOf | AnyOf | Negation"

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\()|(?P<rparen>\))|
        (?P<op><=|>=|!=|=|<|>|:)|
        (?P<string>"(?:[^"\\]|\\.)*")|
        (?P<word>[A-Za-z0-9_.+*\-]+)
    )""",
    re.VERBOSE,
)
_ORDERING_OPS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _bad(description: str) -> InvalidArgument:
    return InvalidArgument.one("filter", description)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _bad(f"unexpected character {text[position:].lstrip()[:1]!r} at {position}")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "string":
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        tokens.append(_Token(kind, raw, match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token], fields: Mapping[str, FilterField]) -> None:
        self.tokens = tokens
        self.index = 0
        self.fields = fields
        self.comparisons = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _bad("the filter ends too early")
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text == word:
            self.index += 1
            return True
        return False

    def expression(self) -> Expression:
        parts = [self.factor()]
        while self.keyword("AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def factor(self) -> Expression:
        parts = [self.term()]
        while self.keyword("OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def term(self) -> Expression:
        if self.keyword("NOT"):
            return Negation(self.simple())
        return self.simple()

    def simple(self) -> Expression:
        token = self.take()
        if token.kind == "lparen":
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise _bad(f"parentheses nest more than {MAX_FILTER_DEPTH} deep")
            inner = self.expression()
            self.depth -= 1
            closing = self.take()
            if closing.kind != "rparen":
                raise _bad(f"expected ')' at {closing.position}")
            return inner
        if token.kind != "word" or token.text in {"AND", "OR", "NOT"}:
            raise _bad(f"expected a field name at {token.position}, found {token.text!r}")
        return self.comparison(token)

    def comparison(self, name: _Token) -> Comparison:
        spec = self.fields.get(name.text)
        if spec is None:
            allowed = ", ".join(sorted(self.fields))
            raise _bad(f"unknown field {name.text!r}; filterable fields are: {allowed}")
        op = self.take()
        if op.kind != "op":
            raise _bad(f"expected a comparison operator after {name.text!r}")
        value = self.take()
        if value.kind not in {"word", "string"}:
            raise _bad(f"expected a value after {name.text} {op.text}")
        self.comparisons += 1
        if self.comparisons > MAX_FILTER_TERMS:
            raise _bad(f"the filter has more than {MAX_FILTER_TERMS} comparisons")
        operator = "=" if op.text == ":" else op.text
        return Comparison(name.text, operator, _convert(name.text, spec, operator, value.text))


def _convert(name: str, spec: FilterField, op: str, raw: str) -> FilterValue:
    if spec.kind is FieldKind.STRING:
        if op in _ORDERING_OPS:
            raise _bad(f"{name} can only be compared with = or !=")
        return raw
    if spec.kind is FieldKind.ENUM:
        if op in _ORDERING_OPS:
            raise _bad(f"{name} can only be compared with = or !=")
        value = raw.upper()
        if spec.enum_prefix and value.startswith(spec.enum_prefix):
            value = value[len(spec.enum_prefix) :]
        if value not in spec.choices:
            raise _bad(f"{raw!r} is not a {name}; use one of {one_of(sorted(spec.choices))}")
        return value
    if spec.kind is FieldKind.NUMBER:
        try:
            return float(raw)
        except ValueError:
            raise _bad(f"{name} needs a number, not {raw!r}") from None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f'{name} needs an RFC 3339 time such as "2026-01-31T12:00:00Z"') from None
    if moment.tzinfo is None:
        raise _bad(f"{name} needs a time with a UTC offset, such as {raw}Z")
    return moment.astimezone(UTC)


def parse_filter(text: str, fields: Mapping[str, FilterField]) -> Expression | None:
    """Parse `text` against the fields a list accepts; None for an empty filter."""
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    tokens = _tokenize(text)
    if not tokens:
        return None
    parser = _Parser(tokens, fields)
    expression = parser.expression()
    leftover = parser.peek()
    if leftover is not None:
        raise _bad(f"unexpected {leftover.text!r} at {leftover.position}; join terms with AND")
    return expression


def evaluate(expression: Expression, value_of: Callable[[str], FilterValue]) -> bool:
    """The filter's verdict on one item, in memory; agrees with the SQL the store compiles
    (every filterable field is non-null, so SQL's three-valued logic never differs)."""
    if isinstance(expression, AllOf):
        return all(evaluate(p, value_of) for p in expression.parts)
    if isinstance(expression, AnyOf):
        return any(evaluate(p, value_of) for p in expression.parts)
    if isinstance(expression, Negation):
        return not evaluate(expression.part, value_of)
    actual, wanted = value_of(expression.field), expression.value
    match expression.op:
        case "=":
            return actual == wanted
        case "!=":
            return actual != wanted
        case "<":
            return actual < wanted  # type: ignore[operator]
        case "<=":
            return actual <= wanted  # type: ignore[operator]
        case ">":
            return actual > wanted  # type: ignore[operator]
        case ">=":
            return actual >= wanted  # type: ignore[operator]
    raise ValueError(f"unknown operator {expression.op}")
