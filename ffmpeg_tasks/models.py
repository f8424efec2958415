"""Value objects: ``Task``, its status and the objects it stored.

A ``Task`` is frozen; every change is an ``attrs.evolve`` that bumps ``version``, so
a record is never half-updated and stores can compare-and-set on ``version``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .metadata import OutputMetadata

__all__ = ["Phase", "StoredObject", "Task", "TaskStatus", "new_task_id", "utcnow"]


class TaskStatus(enum.StrEnum):
    """Where a task is in its life.  The last three are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Phase(enum.StrEnum):
    """Finer detail of a task's progress than its status."""

    CREATED = "created"
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    PROCESSING = "processing"
    UPLOADING = "uploading"
    DONE = "done"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_task_id() -> str:
    return uuid.uuid4().hex


def _dt_to_str(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt_from_str(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _frozen_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen
class StoredObject:
    """One object a task stored, as its record keeps it (``task.outputs``).

    The storage's :class:`~ffmpeg_tasks.storage.base.StoredFile` (``key``, ``uri``,
    ``url``, ``size``) plus the file's ``name`` in the work dir and its ``content_type``.
    """

    name: str
    key: str
    uri: str
    url: str
    size: int
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredObject:
        return cls(**{f.name: data[f.name] for f in attrs.fields(cls)})


def _objects(value: Iterable[StoredObject]) -> tuple[StoredObject, ...]:
    return tuple(value)


@attrs.frozen
class Task:
    """A registered FFmpeg job and everything known about it.

    ``commands`` holds one ffmpeg command, or several chained commands that share a
    work dir.  ``input_files`` maps a file name used in the command to its URL;
    ``output_files`` are the declared output names (the first is the main one).
    ``cancel_requested`` is set by ``cancel()`` of a task running in another
    process, so that its worker records CANCELLED rather than a job-engine stop.
    """

    id: str
    commands: tuple[str, ...] = attrs.field(converter=_str_tuple)
    input_files: dict[str, str] = attrs.field(converter=_frozen_dict)
    output_files: tuple[str, ...] = attrs.field(converter=_str_tuple)
    status: TaskStatus = attrs.field(default=TaskStatus.PENDING, converter=TaskStatus)
    phase: Phase = attrs.field(default=Phase.CREATED, converter=Phase)
    created_at: datetime = attrs.field(factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: tuple[StoredObject, ...] = attrs.field(default=(), converter=_objects)
    error: str | None = None
    error_code: str | None = None
    diagnostics: str | None = None
    progress: float | None = None
    attempts: dict[str, int] = attrs.field(factory=dict, converter=_frozen_dict)
    metadata: dict[str, OutputMetadata] = attrs.field(factory=dict, converter=_frozen_dict)
    options: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    idempotency_key: str | None = None
    worker: str | None = None
    #: The job engine that owns this task's runs and retries (``"saq"``, ``"celery"``), set
    #: when it is submitted to a backend; None while only the process running it does.
    engine: str | None = None
    cancel_requested: bool = False
    version: int = 0

    # -- convenient views -----------------------------------------------------

    @property
    def command(self) -> str:
        """The command; chained commands are joined with `` && ``."""
        return " && ".join(self.commands)

    @property
    def output_filename(self) -> str:
        return self.output_files[0]

    @property
    def output(self) -> StoredObject | None:
        """The stored object of the main output, once completed."""
        for obj in self.outputs:
            if obj.name == self.output_filename:
                return obj
        return None

    @property
    def output_url(self) -> str | None:
        """A URL a plain HTTP GET can download (presigned for S3, ``file://`` locally)."""
        obj = self.output
        return obj.url if obj else None

    @property
    def output_uri(self) -> str | None:
        """The canonical location, e.g. ``s3://bucket/key``."""
        obj = self.output
        return obj.uri if obj else None

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal

    def evolve(self, **changes: Any) -> Task:
        """A copy with ``changes`` applied and ``version`` bumped."""
        return attrs.evolve(self, version=self.version + 1, **changes)

    # -- serialisation --------------------------------------------------------

    def to_dict(self, *, include_diagnostics: bool = False) -> dict[str, Any]:
        """A JSON-ready dict.  Raw ffmpeg output is left out unless asked for."""
        data: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "phase": self.phase.value,
            "command": self.command,
            "commands": list(self.commands),
            "input_files": dict(self.input_files),
            "output_filename": self.output_filename,
            "output_files": list(self.output_files),
            "output_url": self.output_url,
            "output_uri": self.output_uri,
            "outputs": [o.to_dict() for o in self.outputs],
            "error": self.error,
            "error_code": self.error_code,
            "progress": self.progress,
            "attempts": dict(self.attempts),
            "metadata": dict(self.metadata),
            "options": dict(self.options),
            "idempotency_key": self.idempotency_key,
            "worker": self.worker,
            "engine": self.engine,
            "cancel_requested": self.cancel_requested,
            "created_at": _dt_to_str(self.created_at),
            "started_at": _dt_to_str(self.started_at),
            "finished_at": _dt_to_str(self.finished_at),
            "version": self.version,
        }
        if include_diagnostics:
            data["diagnostics"] = self.diagnostics
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """Inverse of ``to_dict(include_diagnostics=True)``."""
        created = _dt_from_str(data["created_at"])
        assert created is not None
        return cls(
            id=data["id"],
            commands=tuple(data["commands"]),
            input_files=data["input_files"],
            output_files=tuple(data["output_files"]),
            status=TaskStatus(data["status"]),
            phase=Phase(data.get("phase", Phase.CREATED)),
            created_at=created,
            started_at=_dt_from_str(data.get("started_at")),
            finished_at=_dt_from_str(data.get("finished_at")),
            outputs=[StoredObject.from_dict(o) for o in data.get("outputs", ())],
            error=data.get("error"),
            error_code=data.get("error_code"),
            diagnostics=data.get("diagnostics"),
            progress=data.get("progress"),
            attempts=data.get("attempts", {}),
            metadata=data.get("metadata", {}),
            options=data.get("options", {}),
            idempotency_key=data.get("idempotency_key"),
            worker=data.get("worker"),
            engine=data.get("engine"),
            cancel_requested=bool(data.get("cancel_requested", False)),
            version=data.get("version", 0),
        )
