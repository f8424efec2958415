"""Configuration from environment variables (``TaskManager.from_env``).

| variable | meaning | default |
|---|---|---|
| ``S3_BUCKET`` | store outputs in this S3 bucket | (local storage) |
| ``S3_PREFIX`` | key prefix inside the bucket | ``""`` |
| ``AWS_REGION`` | the bucket's region | ``us-east-1`` |
| ``AWS_ENDPOINT_URL`` | S3-compatible endpoint (MinIO, R2 …) | AWS |
| ``S3_PRESIGN_EXPIRES`` | seconds an output URL stays valid | 604800 (7 days) |
| ``S3_CHECKSUM`` | ``crc32`` or ``none`` (bodies' CRC32 header) | ``crc32`` |
| ``S3_CONTENT_MD5`` | ``1`` adds a Content-MD5 to every body | ``0`` |
| ``FFMPEG_TASKS_STORAGE_DIR`` | local storage directory | ``./ffmpeg-tasks-output`` |
| ``FFMPEG_TASKS_FFMPEG`` | ffmpeg binary | discovered |
| ``FFMPEG_TASKS_MAX_CONCURRENCY`` | ffmpeg processes at once | 2 |
| ``FFMPEG_TASKS_TIMEOUT`` | seconds ffmpeg may run per task | none |
| ``FFMPEG_TASKS_DEADLINE`` | seconds a whole execution may take (``none``: no limit) | 21600 |
| ``FFMPEG_TASKS_MAX_INPUT_BYTES`` | size cap per downloaded input | 10 GiB |
| ``FFMPEG_TASKS_ALLOW_PRIVATE_NETWORKS`` | ``1`` lets inputs come from private addresses | ``0`` |
| ``FFMPEG_TASKS_SANDBOX`` | ``auto``, ``require`` or ``off`` | ``auto`` |
| ``FFMPEG_TASKS_NICE`` | ffmpeg's CPU priority below the host's (0 to 19) | 10 |
| ``FFMPEG_TASKS_WORK_DIR`` | where private work dirs are made | system temp |
| ``FFMPEG_TASKS_STORE`` | ``memory``, a SQLite path, ``redis://…`` or ``postgresql://…`` | memory |
| ``FFMPEG_TASKS_RETENTION`` | seconds finished tasks are kept | forever |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from .errors import ConfigurationError

__all__ = ["s3_checksum", "settings_from_env", "store_from_url"]

_TRUE = {"1", "true", "yes", "on"}


def _number(env: Mapping[str, str], name: str, kind: type[float] | type[int]) -> Any:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        result = kind(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a number") from None
    if result <= 0:
        raise ConfigurationError(f"{name}={value!r} must be positive")
    return result


def _nice(value: str) -> int:
    if not value.isdigit() or int(value) > 19:
        raise ConfigurationError(f"FFMPEG_TASKS_NICE={value!r}: use an integer from 0 to 19")
    return int(value)


def s3_checksum(value: str, name: str) -> Literal["crc32"] | None:
    """``crc32`` or ``none`` (any case) as S3Storage's ``checksum``; ``name`` for errors."""
    choice = value.strip().lower()
    if choice in ("", "crc32"):
        return "crc32"
    if choice == "none":
        return None
    raise ConfigurationError(f"{name}={value!r}: use 'crc32' or 'none'")


def store_from_url(url: str, prefix: str | None = None) -> Any:
    """A task store for ``memory``, ``redis://…``, ``postgresql://…`` or a SQLite path.

    ``prefix`` names the Redis key prefix or the PostgreSQL table (several
    deployments sharing one server)."""
    if url in ("", "memory"):
        from .store.memory import MemoryTaskStore

        return MemoryTaskStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .store.redis import RedisTaskStore

        return RedisTaskStore(url) if prefix is None else RedisTaskStore(url, prefix=prefix)
    if url.startswith(("postgres://", "postgresql://")):
        from .store.postgres import PostgresTaskStore

        return PostgresTaskStore(url) if prefix is None else PostgresTaskStore(url, table=prefix)
    from .store.sqlite import SQLiteTaskStore

    return SQLiteTaskStore(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


def settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``TaskManager`` read from ``env``."""
    from .downloader.http import HttpDownloader
    from .executor.local import LocalExecutor

    kwargs: dict[str, Any] = {}
    bucket = env.get("S3_BUCKET")
    if bucket:
        from .storage.s3 import S3Storage

        kwargs["storage"] = S3Storage(
            bucket,
            prefix=env.get("S3_PREFIX", ""),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            presign_expires=_number(env, "S3_PRESIGN_EXPIRES", int) or 604800,
            checksum=s3_checksum(env.get("S3_CHECKSUM", "crc32"), "S3_CHECKSUM"),
            content_md5=env.get("S3_CONTENT_MD5", "").lower() in _TRUE,
        )
    else:
        from .storage.local import LocalStorage

        kwargs["storage"] = LocalStorage(
            env.get("FFMPEG_TASKS_STORAGE_DIR") or "ffmpeg-tasks-output"
        )
    max_bytes = _number(env, "FFMPEG_TASKS_MAX_INPUT_BYTES", int)
    if max_bytes:
        kwargs["max_input_bytes"] = max_bytes
    kwargs["downloader"] = HttpDownloader(
        allow_private_networks=env.get("FFMPEG_TASKS_ALLOW_PRIVATE_NETWORKS", "").lower() in _TRUE,
    )
    sandbox = env.get("FFMPEG_TASKS_SANDBOX", "auto")
    if sandbox not in ("auto", "require", "off"):
        raise ConfigurationError(f"FFMPEG_TASKS_SANDBOX={sandbox!r}: use auto, require or off")
    kwargs["executor"] = LocalExecutor(
        env.get("FFMPEG_TASKS_FFMPEG") or None,
        max_concurrency=_number(env, "FFMPEG_TASKS_MAX_CONCURRENCY", int) or 2,
        sandbox=cast(Literal["auto", "require", "off"], sandbox),
        nice=_nice(env.get("FFMPEG_TASKS_NICE") or "10"),
    )
    timeout = _number(env, "FFMPEG_TASKS_TIMEOUT", float)
    if timeout:
        kwargs["timeout"] = timeout
    if env.get("FFMPEG_TASKS_DEADLINE", "").strip().lower() == "none":
        kwargs["deadline"] = None
    else:
        deadline = _number(env, "FFMPEG_TASKS_DEADLINE", float)
        if deadline:
            kwargs["deadline"] = deadline
    if env.get("FFMPEG_TASKS_WORK_DIR"):
        kwargs["work_dir"] = env["FFMPEG_TASKS_WORK_DIR"]
    kwargs["store"] = store_from_url(
        env.get("FFMPEG_TASKS_STORE", "memory"), env.get("FFMPEG_TASKS_STORE_PREFIX") or None
    )
    retention = _number(env, "FFMPEG_TASKS_RETENTION", float)
    if retention:
        kwargs["retention"] = retention
    return kwargs
