"""OpenTelemetry traces and metrics of task runs, when ``opentelemetry-api`` is installed.

Nothing to set up: with the API importable, :class:`Telemetry` uses the global tracer and
meter providers, which record nothing until the host installs an SDK.  Without the API
every call here does nothing.  Instrumentation never breaks a task: its own errors are
logged on ``ffmpeg_tasks.telemetry`` and dropped.  docs/observability.md lists the names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import FFmpegTasksError
from .events import Event
from .models import Task

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, UpDownCounter
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["SpanHandle", "TaskSpan", "Telemetry", "default_telemetry"]

log = logging.getLogger(__name__)

NAME = "ffmpeg_tasks"
#: Histogram buckets in seconds, from a quick probe to a long transcode.
DURATION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0, 7200.0, 21600.0,
)  # fmt: skip

AttributeValue = str | bool | int | float | Sequence[str]


@contextlib.contextmanager
def _quiet(what: str) -> Iterator[None]:
    """Log and drop an error of the instrumentation itself."""
    try:
        yield
    except Exception:
        log.warning("telemetry: %s failed", what, exc_info=True)


def _error_type(exc: BaseException) -> str:
    """What ended a span early, in a word: an error code, ``cancelled`` or the type's name."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, FFmpegTasksError):
        return exc.code
    return type(exc).__name__


class SpanHandle:
    """Sets attributes (``ffmpeg_tasks.<key>``) on one span; does nothing when tracing is off."""

    def __init__(self, span: Span | None = None) -> None:
        self.span = span

    def set(self, key: str, value: AttributeValue) -> None:
        if self.span is not None:
            try:
                self.span.set_attribute(f"{NAME}.{key}", value)
            except Exception:
                log.warning("telemetry: setting a span attribute failed", exc_info=True)


class TaskSpan(SpanHandle):
    """The span of one run of a task; the run says how it ended with :meth:`end_as`."""

    def __init__(self, span: Span | None = None) -> None:
        super().__init__(span)
        self.status: str | None = None
        self.error_code: str | None = None

    def end_as(self, status: str, error_code: str | None = None) -> None:
        """``completed``, ``failed`` or ``cancelled`` (with the task's code), or ``released``
        (back to pending) or ``lost`` (another worker took it over)."""
        self.status, self.error_code = status, error_code


class Telemetry:
    """Spans and metrics of the runs of one or more managers.

    By default the global providers are used (see :func:`default_telemetry`); pass
    ``tracer_provider`` / ``meter_provider`` to send a manager's telemetry elsewhere
    (``TaskManager(telemetry=Telemetry(...))``), or ``enabled=False`` for none.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        enabled: bool = True,
    ) -> None:
        #: False without ``opentelemetry-api`` (or when turned off): every method is a no-op.
        self.enabled = False
        if not enabled:
            return
        try:
            from opentelemetry import context, metrics, trace
        except ImportError:
            return
        with _quiet("setting up the tracer and meter"):
            self._context, self._trace = context, trace
            self._tracer: Tracer = trace.get_tracer(
                NAME, __version__, tracer_provider=tracer_provider
            )
            meter = metrics.get_meter(NAME, __version__, meter_provider=meter_provider)
            self._finished: Counter = meter.create_counter(
                "ffmpeg_tasks.tasks.finished",
                unit="{task}",
                description="Tasks that ended, by status: completed, failed or cancelled.",
            )
            self._running: UpDownCounter = meter.create_up_down_counter(
                "ffmpeg_tasks.tasks.running",
                unit="{task}",
                description="Runs in progress in this process.",
            )
            self._queued: UpDownCounter = meter.create_up_down_counter(
                "ffmpeg_tasks.tasks.queued",
                unit="{task}",
                description="Tasks waiting for a slot in this process (max_concurrent_tasks).",
            )
            self._task_duration = _seconds_histogram(
                meter,
                "ffmpeg_tasks.task.duration",
                "One run of a task in this process, by how it ended.",
            )
            self._phase_duration = _seconds_histogram(
                meter,
                "ffmpeg_tasks.phase.duration",
                "One phase of a run: fetch, run (one ffmpeg step), probe, store.",
            )
            self._fetched: Counter = meter.create_counter(
                "ffmpeg_tasks.fetched", unit="By", description="Bytes of inputs fetched."
            )
            self._stored: Counter = meter.create_counter(
                "ffmpeg_tasks.stored", unit="By", description="Bytes of outputs stored."
            )
            self.enabled = True

    # -- spans -------------------------------------------------------------------------

    @contextlib.contextmanager
    def task(self, task: Task) -> Iterator[TaskSpan]:
        """Span ``ffmpeg_tasks.task`` around one run of ``task`` here; counts it as running.

        Ends with status ERROR (``ffmpeg_tasks.error_code``) when failed or cancelled — a
        ``CancelledError`` passing through counts as cancelled — and leaves it unset otherwise.
        """
        if not self.enabled:
            yield TaskSpan()
            return
        started = time.perf_counter()
        attributes = {f"{NAME}.task_id": task.id, f"{NAME}.attempt": task.attempts.get("run", 1)}
        span, token = self._open(f"{NAME}.task", attributes)
        handle = TaskSpan(span)
        self._add(self._running, 1)
        try:
            yield handle
        except BaseException as exc:
            if handle.status is None:
                cancelled = isinstance(exc, asyncio.CancelledError)
                handle.end_as("cancelled" if cancelled else "failed", _error_type(exc))
            raise
        finally:
            self._add(self._running, -1)
            with _quiet("ending the task span"):
                self._end_task(handle, time.perf_counter() - started)
            self._close(span, token)

    def _end_task(self, handle: TaskSpan, seconds: float) -> None:
        from opentelemetry.trace import StatusCode

        status = handle.status
        if status is None:
            return
        handle.set("status", status)
        if status in ("failed", "cancelled"):  # success stays UNSET, as the spec asks
            code = handle.error_code or status
            handle.set("error_code", code)
            self._set_status(handle.span, StatusCode.ERROR, code)
        self._task_duration.record(seconds, {"status": status})

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[SpanHandle]:
        """Child span ``ffmpeg_tasks.<name>``, timed into ``ffmpeg_tasks.phase.duration``."""
        if not self.enabled:
            yield SpanHandle()
            return
        started = time.perf_counter()
        span, token = self._open(f"{NAME}.{name}", {})
        outcome = "ok"
        try:
            yield SpanHandle(span)
        except BaseException as exc:
            outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
            with _quiet("recording a phase's error"):
                from opentelemetry.trace import StatusCode

                if span is not None:
                    span.set_attribute("error.type", _error_type(exc))
                self._set_status(span, StatusCode.ERROR, _error_type(exc))
            raise
        finally:
            self._close(span, token)
            try:
                elapsed = time.perf_counter() - started
                self._phase_duration.record(elapsed, {"phase": name, "outcome": outcome})
            except Exception:
                log.warning("telemetry: recording a phase's duration failed", exc_info=True)

    def _open(self, name: str, attributes: Mapping[str, Any]) -> tuple[Span | None, object]:
        """Start span ``name`` and make it the current one (None where that failed)."""
        span: Span | None = None
        try:
            span = self._tracer.start_span(name, attributes=attributes)
            return span, self._context.attach(self._trace.set_span_in_context(span))
        except Exception:
            log.warning("telemetry: starting span %s failed", name, exc_info=True)
            return span, None

    def _close(self, span: Span | None, token: Any) -> None:
        try:
            if token is not None:
                self._context.detach(token)
        except Exception:
            log.warning("telemetry: restoring the current span failed", exc_info=True)
        try:
            if span is not None:
                span.end()
        except Exception:
            log.warning("telemetry: ending a span failed", exc_info=True)

    @staticmethod
    def _set_status(span: Span | None, code: Any, description: str | None = None) -> None:
        if span is not None:
            from opentelemetry.trace import Status

            span.set_status(Status(code, description))

    # -- metrics -----------------------------------------------------------------------

    @contextlib.contextmanager
    def queued(self) -> Iterator[None]:
        """Counts a task as waiting for a slot in this process while inside."""
        if not self.enabled:
            yield
            return
        self._add(self._queued, 1)
        try:
            yield
        finally:
            self._add(self._queued, -1)

    def fetched(self, size: int) -> None:
        """One input of ``size`` bytes was fetched."""
        if self.enabled:
            self._add(self._fetched, size)

    def stored(self, size: int) -> None:
        """One output of ``size`` bytes was stored."""
        if self.enabled:
            self._add(self._stored, size)

    def on_event(self, event: Event) -> None:
        """An event handler: counts each terminal event in ``ffmpeg_tasks.tasks.finished``."""
        if self.enabled and event.type.is_terminal:
            self._add(self._finished, 1, {"status": event.type.value})

    @staticmethod
    def _add(
        instrument: Counter | UpDownCounter,
        amount: int,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        try:
            instrument.add(amount, attributes)
        except Exception:
            log.warning("telemetry: recording a metric failed", exc_info=True)


def _seconds_histogram(meter: Meter, name: str, description: str) -> Histogram:
    """A histogram in seconds with :data:`DURATION_BUCKETS` where the meter takes the advice."""
    try:
        return meter.create_histogram(
            name, unit="s", description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
    except TypeError:  # a meter that predates the advice (API < 1.30): the SDK's buckets
        return meter.create_histogram(name, unit="s", description=description)


_default: Telemetry | None = None


def default_telemetry() -> Telemetry:
    """The :class:`Telemetry` of managers given none: the global providers, shared."""
    global _default
    if _default is None:
        _default = Telemetry()
    return _default
