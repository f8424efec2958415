"""One exception hierarchy for the whole library.

Every error carries a machine-readable ``code`` (a short snake_case string) and a
message that names the offending value.  Errors that end a task (``TaskFailure``
and its subclasses) are recorded on the task as ``error_code`` / ``error``; the
message of such an error is written for the caller and never contains raw ffmpeg
output (that stays host-side in ``Task.diagnostics``).
"""

from __future__ import annotations

from .error_codes import ERROR_CODES, ErrorCode

__all__ = [
    "ERROR_CODES",
    "BlockedAddressError",
    "CommandRejectedError",
    "ConfigurationError",
    "DownloadConnectionError",
    "DownloadError",
    "DownloadHTTPError",
    "DownloadTimeoutError",
    "DownloadTooLargeError",
    "ErrorCode",
    "ExecutionError",
    "ExecutionStalledError",
    "ExecutionTimeoutError",
    "FFmpegNotFoundError",
    "FFmpegTasksError",
    "InvalidSpecError",
    "InvalidTaskStateError",
    "OutputError",
    "SandboxUnavailableError",
    "StorageError",
    "TaskFailure",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "WebhookError",
]


class FFmpegTasksError(Exception):
    """Base of every error raised by ffmpeg_tasks."""

    code: ErrorCode = "error"

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


# --- misuse of the API -------------------------------------------------------


class TaskNotFoundError(FFmpegTasksError, LookupError):
    """No task with this id exists (or it has expired)."""

    code: ErrorCode = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class InvalidTaskStateError(FFmpegTasksError):
    """The operation is not allowed in the task's current status."""

    code: ErrorCode = "invalid_state"


class InvalidSpecError(FFmpegTasksError, ValueError):
    """The task specification (command, input files, outputs) is invalid.

    ``field`` names the part of the spec that is wrong (``"command"``,
    ``"input_files"``, ``"output_filename"`` …).
    """

    code: ErrorCode = "invalid_spec"

    def __init__(self, message: str, *, field: str = "spec", code: ErrorCode | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class CommandRejectedError(InvalidSpecError):
    """The command policy refused the ffmpeg command."""

    code: ErrorCode = "command_rejected"

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message, field="command", code=code)


class ConfigurationError(FFmpegTasksError):
    """The library is set up in a way that cannot work."""

    code: ErrorCode = "configuration_error"


class FFmpegNotFoundError(ConfigurationError):
    """No ffmpeg binary could be found."""

    code: ErrorCode = "ffmpeg_not_found"


class SandboxUnavailableError(ConfigurationError):
    """The sandbox was required but is not available on this host."""

    code: ErrorCode = "sandbox_unavailable"


# --- failures that end a task ------------------------------------------------


class TaskFailure(FFmpegTasksError):
    """An error that makes a task FAILED.  ``transient`` errors may be retried."""

    code: ErrorCode = "failed"
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        transient: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        if transient is not None:
            self.transient = transient
        self.retry_after = retry_after


class DownloadError(TaskFailure):
    """An input could not be downloaded.  ``url`` names it."""

    code: ErrorCode = "download_failed"

    def __init__(
        self,
        message: str,
        *,
        url: str,
        code: ErrorCode | None = None,
        transient: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, transient=transient, retry_after=retry_after)
        self.url = url


class DownloadHTTPError(DownloadError):
    """The server answered with an HTTP error status."""

    code: ErrorCode = "download_http_error"

    def __init__(
        self, url: str, status: int, *, reason: str = "", retry_after: float | None = None
    ) -> None:
        text = f"HTTP {status}{' ' + reason if reason else ''} for {url}"
        transient = status in (408, 425, 429) or status >= 500
        super().__init__(text, url=url, transient=transient, retry_after=retry_after)
        self.status = status


class DownloadTooLargeError(DownloadError):
    """The body is larger than the configured cap."""

    code: ErrorCode = "download_too_large"


class DownloadTimeoutError(DownloadError):
    """The server was too slow (connect, read or minimum-rate timeout)."""

    code: ErrorCode = "download_timeout"
    transient = True


class DownloadConnectionError(DownloadError):
    """The host could not be resolved or connected to, or the connection broke."""

    code: ErrorCode = "download_connection_error"
    transient = True


class BlockedAddressError(DownloadError):
    """The URL (or a redirect) points at an address the downloader refuses."""

    code: ErrorCode = "blocked_address"


class ExecutionError(TaskFailure):
    """ffmpeg exited with an error.  ``returncode`` is its exit status."""

    code: ErrorCode = "ffmpeg_failed"

    def __init__(
        self, message: str, *, returncode: int | None = None, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.returncode = returncode


class ExecutionTimeoutError(ExecutionError):
    """ffmpeg ran longer than its timeout and was stopped."""

    code: ErrorCode = "timeout"


class ExecutionStalledError(ExecutionError):
    """ffmpeg stopped making progress and was stopped."""

    code: ErrorCode = "stalled"


class TaskTimeoutError(TaskFailure):
    """The whole task ran longer than its deadline."""

    code: ErrorCode = "timeout"


class StorageError(TaskFailure):
    """The output could not be stored."""

    code: ErrorCode = "storage_failed"


class OutputError(TaskFailure):
    """An output is missing, empty, not a regular file, or outside expectations."""

    code: ErrorCode = "output_invalid"


# --- notifications ----------------------------------------------------------


class WebhookError(FFmpegTasksError):
    """A webhook could not be delivered.  ``url`` names the target, ``status`` the last
    HTTP status (None when no answer came).  Never ends a task."""

    code: ErrorCode = "webhook_failed"

    def __init__(
        self, message: str, *, url: str, status: int | None = None, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.url = url
        self.status = status
