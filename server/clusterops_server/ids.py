"""Resource ids: a kind prefix and 20 random lowercase hex digits.

For example "wr-3f9c0a1b2d4e5f607182".
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum


class IdKind(StrEnum):
    CLUSTER = "cls"
    NODE_POOL = "np"
    NODE = "node"
    WORK_REQUEST = "wr"
    UPGRADE_WORKFLOW = "uw"
    UPGRADE_TASK = "task"
    ORCHESTRATION = "orc"
    OPERATION = "op"
    SUBSCRIPTION = "sub"


_HEX_DIGITS = 20


def new_id(kind: IdKind) -> str:
    return f"{kind.value}-{secrets.token_hex(_HEX_DIGITS // 2)}"


def is_valid_id(kind: IdKind, value: str) -> bool:
    return re.fullmatch(rf"{kind.value}-[0-9a-f]{{{_HEX_DIGITS}}}", value) is not None


def id_format(kind: IdKind) -> str:
    """How a valid id of this kind looks, for error messages."""
    return f'"{kind.value}-" followed by {_HEX_DIGITS} lowercase hexadecimal digits'
