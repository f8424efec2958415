"""``command=`` or ``argv=``: the task's commands as the task stores them.

``command`` is one command string or a list of chained command strings; ``argv`` is
one command already split into arguments — what ``subprocess`` takes, what
ffmpeg-python's ``compile()`` and typed-ffmpeg's ``compile()`` return.  An argv is
stored as one string that the policy splits back into exactly the same tokens
(:func:`shlex.join`), so records, stores and workers see an ordinary command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from .errors import InvalidSpecError

__all__ = ["argv_to_command", "task_commands"]

_PROGRAMS = frozenset({"ffmpeg", "ffmpeg.exe"})


def _is_program(token: str) -> bool:
    return re.split(r"[\\/]", token)[-1].lower() in _PROGRAMS


def argv_to_command(argv: Sequence[str]) -> str:
    """One command string for ``argv``; a leading ``ffmpeg`` (or a path to it) is dropped.

    Tokens are kept whole: a filter graph or a ``title=a b`` value with spaces stays
    one argument.  Raises :class:`InvalidSpecError` (field ``argv``).
    """
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
        raise InvalidSpecError(
            "argv must be a list of arguments (for a command string use command=)",
            field="argv",
        )
    tokens = list(argv)
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            raise InvalidSpecError(
                f"argv[{index}] must be a string, got {type(token).__name__}",
                field="argv",
                code="invalid_token",
            )
    if tokens and _is_program(tokens[0]):
        tokens = tokens[1:]
    elif tokens and not tokens[0].startswith("-") and re.search(r"[\\/]", tokens[0]):
        raise InvalidSpecError(
            "argv starts with a program path other than ffmpeg; give ffmpeg's arguments",
            field="argv",
        )
    if not tokens:
        raise InvalidSpecError("argv holds no arguments", field="argv", code="empty_command")
    return shlex.join(tokens)


def task_commands(
    command: str | Sequence[str] | None, argv: Sequence[str] | None
) -> tuple[str, ...]:
    """The commands to store: from exactly one of ``command`` and ``argv``."""
    if argv is not None:
        if command is not None:
            raise InvalidSpecError(
                "give either command= or argv=, not both", field="argv", code="invalid_spec"
            )
        return (argv_to_command(argv),)
    if command is None:
        raise InvalidSpecError(
            "no command: give command= (a string, or a list of chained command strings) "
            "or argv= (one command as a list of arguments)",
            field="command",
            code="empty_command",
        )
    if isinstance(command, str):
        return (command,)
    commands = tuple(command)
    if commands and all(isinstance(c, str) for c in commands):
        split = any(c.startswith("-") and not any(ch.isspace() for ch in c) for c in commands)
        if split or _is_program(commands[0]):
            raise InvalidSpecError(
                "command= is a list of chained command strings, but this looks like one "
                "command split into arguments: pass it as argv=",
                field="command",
                code="invalid_spec",
            )
    return commands
