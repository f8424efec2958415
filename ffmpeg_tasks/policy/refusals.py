"""How the policy refuses: a :class:`CommandRejectedError` whose message quotes a short value."""

from __future__ import annotations

from ..error_codes import ErrorCode
from ..errors import CommandRejectedError

__all__ = ["reject", "shown"]


def shown(value: str, limit: int = 80) -> str:
    """``value`` quoted for a message, cut at ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def reject(message: str, code: ErrorCode) -> CommandRejectedError:
    return CommandRejectedError(message, code=code)
