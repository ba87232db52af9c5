"""Regular expressions from callers, matched with RE2.

KEB matches orchestration targets with Go's regexp, which is RE2: the same syntax
(no backreferences or lookaround) and matching in time linear in the input, so a
caller's pattern cannot stall the server however it is written.
"""

from __future__ import annotations

from typing import Any

import re2

MAX_PATTERN_LENGTH = 256

_OPTIONS = re2.Options()
# A bad pattern is the caller's mistake, answered INVALID_ARGUMENT; not a server log line.
_OPTIONS.log_errors = False
_OPTIONS.max_mem = 1 << 20


class PatternError(ValueError):
    """The text is not a regular expression RE2 accepts; the message says why."""


class Pattern:
    """A compiled pattern that matches anywhere in a value, as KEB's regexp.MatchString
    does; callers anchor with ^ and $ when they mean the whole value."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_PATTERN_LENGTH:
            raise PatternError(f"must be at most {MAX_PATTERN_LENGTH} characters")
        try:
            self._compiled: Any = re2.compile(text, _OPTIONS)
        except re2.error as error:
            raise PatternError(_reason(error)) from None
        self.text = text

    def matches(self, value: str) -> bool:
        return self._compiled.search(value) is not None


def _reason(error: Exception) -> str:
    detail = error.args[0] if error.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return f"is not a valid regular expression (RE2 syntax): {detail}"
