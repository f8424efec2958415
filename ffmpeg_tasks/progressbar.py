"""A live progress bar for one task: ``await follow(tm, task.id)``.

    task = await tm.register(...)
    await tm.submit(task.id)
    task = await follow(tm, task.id)   # tqdm bar; a widget in Jupyter

The bar shows the phase as its description, bytes while downloading or
uploading, and percent, fps, speed and ETA while ffmpeg runs (percent and ETA when
the duration is known); the last line gives the task's total time.  tqdm is
the optional extra ``progress`` (``pip install 'ffmpeg-tasks[progress]'``);
:class:`PlainBar` prints plain lines instead and needs nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigurationError
from .events import Event, EventType
from .models import Task

if TYPE_CHECKING:
    from .manager import TaskManager

__all__ = ["PlainBar", "follow"]


class PlainBar:
    """A tqdm look-alike that writes a line per phase change and per 10 % step.

    For terminals without tqdm and for logs (no carriage returns).
    """

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file if file is not None else sys.stderr
        self.n: float = 0
        self.total: float | None = None
        self.unit = "%"
        self.unit_scale = False
        self.desc = ""
        self.postfix = ""
        self._shown: tuple[str, int] | None = None

    def set_description_str(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc
        if refresh:
            self.refresh()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        if refresh:
            self.refresh()

    def reset(self, total: float | None = None) -> None:
        self.n = 0
        self.total = total

    def refresh(self) -> None:
        step = -1
        if self.total:
            step = int(min(self.n / self.total, 1.0) * 10)
        if (self.desc, step) == self._shown:
            return
        self._shown = (self.desc, step)
        if step < 0:
            line = self.desc
        elif self.unit == "B":
            line = f"{self.desc} {self.n / 1e6:.1f}/{(self.total or 0) / 1e6:.1f} MB"
        else:
            line = f"{self.desc} {step * 10}%"
        if self.postfix:
            line = f"{line} ({self.postfix})"
        print(line, file=self.file, flush=True)

    def close(self) -> None:
        """Nothing to release."""


def _new_bar() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ConfigurationError(
            "follow() needs tqdm for its bar: pip install 'ffmpeg-tasks[progress]' "
            "(or pass bar=PlainBar())"
        ) from None
    return tqdm(total=100, unit="%", bar_format=_PERCENT_FORMAT)


_PERCENT_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]"
_DONE_FORMAT = "{desc}: {percentage:3.0f}%|{bar}|"


def format_seconds(seconds: float) -> str:
    """``75.4`` → ``"01:15"``; an hour or more → ``"1:02:03"``."""
    whole = max(int(seconds + 0.5), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def running_postfix(event: Event) -> str:
    """``"24.0 fps, 1.52x, ETA 00:41"`` from what a ``running`` event carries."""
    parts = []
    if event.fps is not None:
        parts.append(f"{event.fps:.1f} fps")
    if event.speed is not None:
        parts.append(f"{event.speed:.2f}x")
    if event.eta is not None:
        parts.append(f"ETA {format_seconds(event.eta)}")
    return ", ".join(parts)


class _Feeder:
    """Turns events into bar updates."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.mode: str | None = None
        self.files: dict[str, tuple[int, int | None]] = {}
        self.started = time.monotonic()

    def _switch(self, mode: str, desc: str, *, bytes_: bool) -> None:
        if mode != self.mode:
            self.mode = mode
            self.files = {}
            self.bar.unit = "B" if bytes_ else "%"
            self.bar.unit_scale = bytes_
            self.bar.bar_format = None if bytes_ else _PERCENT_FORMAT
            self.bar.reset(total=None if bytes_ else 100)
            self.bar.set_postfix_str("", refresh=False)
        self.bar.set_description_str(desc, refresh=False)

    def feed(self, event: Event) -> None:
        kind = event.type
        if kind in (EventType.DOWNLOADING, EventType.UPLOADING):
            self._switch(kind.value, kind.value, bytes_=True)
            self.files[event.name or ""] = (event.bytes_done or 0, event.bytes_total)
            totals = [t for _, t in self.files.values()]
            self.bar.total = None if None in totals else sum(t or 0 for t in totals)
            self.bar.n = sum(done for done, _ in self.files.values())
        elif kind is EventType.RUNNING:
            self._switch("running", "running ffmpeg", bytes_=False)
            if event.percent is not None:
                self.bar.n = round(min(max(event.percent, 0.0), 100.0), 1)
            self.bar.set_postfix_str(running_postfix(event), refresh=False)
        elif kind is EventType.RETRYING:
            self.bar.set_description_str(f"retrying {event.name or ''}".strip(), refresh=False)
        elif kind.is_terminal:
            task = event.task
            desc = kind.value
            if task is not None and task.error_code and kind is not EventType.COMPLETED:
                desc = f"{kind.value}: {task.error_code}"
            desc = f"{desc} in {format_seconds(time.monotonic() - self.started)}"
            self._switch("done", desc, bytes_=False)
            self.bar.bar_format = _DONE_FORMAT  # the total is in desc: no phase timer
            if kind is EventType.COMPLETED:
                self.bar.n = 100
        else:  # queued, started
            self.bar.set_description_str(kind.value, refresh=False)
        self.bar.refresh()


async def follow(tm: TaskManager, task_id: str, *, bar: Any = None) -> Task:
    """Show the task's progress until it ends; return the finished task.

    ``bar`` is a tqdm-like object to drive (``tqdm.auto.tqdm`` made here when None,
    and then closed at the end).  Following does not start, wait for a slot or
    cancel the task: submit it first.  Raises :class:`ConfigurationError` when tqdm
    is needed but not installed.
    """
    own = bar is None
    if own:
        bar = _new_bar()
    feeder = _Feeder(bar)
    final: Task | None = None
    try:
        async for event in tm.events(task_id):
            feeder.feed(event)
            if event.type.is_terminal:
                final = event.task
    finally:
        if own:
            bar.close()
    return final if final is not None else await tm.status(task_id)
