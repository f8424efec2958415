"""The plan of a whole task: one command plan per step, downloads and storage keys.

A task may chain several commands in one work dir; each step may read the declared
inputs and whatever earlier steps wrote.  ``TaskManager.plan()`` returns this as a
dry run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import InvalidSpecError
from .policy import CommandPlan, CommandPolicy

__all__ = ["TaskPlan", "plan_task"]


@attrs.frozen
class TaskPlan:
    """What executing a task would do, without doing it."""

    steps: tuple[CommandPlan, ...]
    argv: tuple[tuple[str, ...], ...]
    downloads: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    sidecars: tuple[str, ...]
    storage_keys: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [list(a) for a in self.argv],
            "downloads": [{"name": n, "url": u} for n, u in self.downloads],
            "outputs": list(self.outputs),
            "sidecars": list(self.sidecars),
            "storage_keys": list(self.storage_keys),
            "notes": list(self.notes),
        }


def _mentions(command: str, name: str) -> bool:
    return (
        re.search(rf"(?<![A-Za-z0-9._%-]){re.escape(name)}(?![A-Za-z0-9._-])", command) is not None
    )


def plan_task(
    policy: CommandPolicy,
    commands: Sequence[str],
    input_files: Mapping[str, str],
    outputs: Sequence[str],
    *,
    binary: str = "ffmpeg",
    task_id: str = "<task_id>",
) -> TaskPlan:
    """Plan every step with ``policy``; raise ``InvalidSpecError`` on any problem."""
    inputs = list(input_files)
    if len(commands) == 1:
        steps = [policy.plan(commands[0], inputs=inputs, outputs=list(outputs))]
    else:
        steps = []
        available = list(inputs)
        unused = set(inputs)
        unwritten = set(outputs)
        for number, command in enumerate(commands, 1):
            step_in = [n for n in available if _mentions(command, n)]
            step_out = [n for n in outputs if n not in step_in and _mentions(command, n)]
            try:
                steps.append(policy.plan(command, inputs=step_in, outputs=step_out, partial=True))
            except InvalidSpecError as exc:
                raise type(exc)(f"step {number}: {exc.message}", code=exc.code) from None
            unused.difference_update(step_in)
            unwritten.difference_update(step_out)
            available.extend(n for n in step_out if n not in available)
        if unused:
            raise InvalidSpecError(
                f"input {sorted(unused)[0]!r} is declared but no command uses it",
                field="input_files",
                code="unused_input",
            )
        if unwritten:
            raise InvalidSpecError(
                f"output {sorted(unwritten)[0]!r} is declared but no command writes it",
                field="output_files",
                code="unwritten_output",
            )
    sidecars: list[str] = []
    notes: list[str] = []
    for number, step in enumerate(steps, 1):
        sidecars.extend(s for s in step.sidecars if s not in sidecars)
        prefix = f"step {number}: " if len(steps) > 1 else ""
        notes.extend(prefix + note for note in step.notes)
    return TaskPlan(
        steps=tuple(steps),
        argv=tuple((binary, *s.args) for s in steps),
        downloads=tuple(input_files.items()),
        outputs=tuple(outputs),
        sidecars=tuple(sidecars),
        storage_keys=tuple(f"{task_id}/{name}" for name in (*outputs, *sidecars)),
        notes=tuple(notes),
    )
