"""Splitting a command string into an argv, and ``{{name}}`` placeholders."""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Collection, Sequence

from ..errors import CommandRejectedError
from .refusals import shown

__all__ = ["MAX_COMMAND_LENGTH", "MAX_TOKENS", "substitute_placeholders", "tokenize"]

#: Longest command string (characters) accepted.
MAX_COMMAND_LENGTH = 16 * 1024
#: Most tokens accepted in one command.
MAX_TOKENS = 512

_PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}")
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%-]*")


def _check_chars(text: str) -> None:
    for ch in text:
        if ch == " ":
            continue
        cat = unicodedata.category(ch)
        # Cc: control (NUL, newline, tab, DEL...), Cf: format (bidi overrides,
        # zero-width), Cs: surrogates, Zl/Zp: line/paragraph separators, Co/Cn:
        # private or unassigned.
        if cat in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn") or (cat == "Zs" and ch != " "):
            raise CommandRejectedError(
                f"command contains the forbidden character U+{ord(ch):04X}",
                code="invalid_character",
            )


def tokenize(
    command: str | Sequence[str],
    *,
    max_length: int = MAX_COMMAND_LENGTH,
    max_tokens: int = MAX_TOKENS,
) -> tuple[str, ...]:
    """Split ``command`` like a POSIX shell would (quotes, backslashes), without running one.

    A sequence is taken as an already split argv.  A leading ``ffmpeg`` program name
    is dropped.  Raises :class:`CommandRejectedError` on unbalanced quotes, control
    or invisible characters, an overlong command or too many tokens.
    """
    if isinstance(command, str):
        if len(command) > max_length:
            raise CommandRejectedError(
                f"command is {len(command)} characters long (limit {max_length})",
                code="command_too_long",
            )
        _check_chars(command)
        try:
            tokens = shlex.split(command, comments=False, posix=True)
        except ValueError as exc:
            raise CommandRejectedError(
                f"command cannot be split into arguments ({exc}): {shown(command, 60)}",
                code="unbalanced_quotes",
            ) from None
    else:
        tokens = []
        total = 0
        for item in command:
            if not isinstance(item, str):
                raise CommandRejectedError(
                    f"command arguments must be strings, got {type(item).__name__}",
                    code="invalid_token",
                )
            total += len(item) + 1
            if total > max_length:
                raise CommandRejectedError(
                    f"command is longer than {max_length} characters", code="command_too_long"
                )
            _check_chars(item)
            tokens.append(item)
    if len(tokens) > max_tokens:
        raise CommandRejectedError(
            f"command has {len(tokens)} arguments (limit {max_tokens})", code="too_many_tokens"
        )
    if tokens and tokens[0] in ("ffmpeg", "ffmpeg.exe"):
        tokens = tokens[1:]
    if not tokens:
        raise CommandRejectedError("command is empty", code="empty_command")
    return tuple(tokens)


def substitute_placeholders(token: str, declared: Collection[str]) -> tuple[str, frozenset[str]]:
    """Replace every ``{{name}}`` in ``token`` by ``name``; return it and the names used.

    ``name`` must be one of ``declared``; anything else is refused.
    """
    used: set[str] = set()

    def repl(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in declared:
            raise CommandRejectedError(
                f"placeholder {{{{{name}}}}} does not name a declared input or output file",
                code="undeclared_placeholder",
            )
        used.add(name)
        return name

    if "{{" not in token:
        return token, frozenset()
    result = _PLACEHOLDER_RE.sub(repl, token)
    if "{{" in result:
        raise CommandRejectedError(
            f"malformed placeholder in {shown(token, 60)} (expected {{{{file-name}}}})",
            code="bad_placeholder",
        )
    return result, frozenset(used)
