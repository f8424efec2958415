"""``ffmpeg-tasks`` / ``python -m ffmpeg_tasks``: run, plan and check tasks from a shell.

    ffmpeg-tasks run "-i in.mp4 -vf scale=640:-2 out.mp4" -i in.mp4=https://…/video.mp4 -o out.mp4
    ffmpeg-tasks run "-i in.mp4 -c:a aac out.m4a" -i in.mp4=./local.mp4 -o out.m4a --json
    ffmpeg-tasks plan "-i in.mp4 -c copy out.mkv" -i in.mp4=https://…/v.mp4 -o out.mkv
    ffmpeg-tasks health --s3-bucket my-bucket

The COMMAND is one quoted ffmpeg command without the program name (several
COMMANDs run in order in one work dir).  An input may be a URL or a local file:
local files are read by a small downloader that knows only the files named on the
command line; every other input goes through the HTTP downloader and its checks.

Exit status of ``run``: 0 completed, 1 failed (code and message on stderr), 2 bad
usage or a rejected spec, 130 interrupted by Ctrl-C (the task is cancelled first),
141 stdout closed by its reader.  With ``--json`` stdout is always JSON: the task, or
``{"error": …, "code": …}`` when no task ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._lifecycle import cancel_and_wait
from ._version import __version__
from .downloader.base import Downloader
from .downloader.local import LocalFileDownloader
from .errors import ConfigurationError, FFmpegTasksError, InvalidSpecError
from .models import Task, TaskStatus

__all__ = ["LocalFileDownloader", "build_parser", "main"]  # LocalFileDownloader: its old home

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

# -- argument parsing --------------------------------------------------------------


def _s3_checksum_options(args: argparse.Namespace) -> dict[str, Any]:
    """``checksum`` / ``content_md5`` from ``--s3-checksum`` / ``--s3-content-md5`` or env."""
    import os

    from .config import _TRUE, s3_checksum

    if args.s3_checksum is not None:
        checksum = s3_checksum(args.s3_checksum, "--s3-checksum")
    else:
        checksum = s3_checksum(os.environ.get("S3_CHECKSUM", "crc32"), "S3_CHECKSUM")
    md5 = args.s3_content_md5
    if md5 is None:
        md5 = os.environ.get("S3_CONTENT_MD5", "").lower() in _TRUE
    return {"checksum": checksum, "content_md5": bool(md5)}


def _backend_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where outputs go (default: a local directory)")
    group = where.add_mutually_exclusive_group()
    group.add_argument("--storage-dir", metavar="DIR", help="store outputs in this directory")
    group.add_argument("--s3-bucket", metavar="B", help="store outputs in this S3 bucket")
    where.add_argument("--s3-prefix", metavar="P", default="", help="key prefix in the bucket")
    where.add_argument("--endpoint-url", metavar="U", help="S3-compatible endpoint (MinIO, R2 …)")
    where.add_argument("--region", metavar="R", help="the bucket's region")
    where.add_argument(
        "--s3-checksum",
        choices=("crc32", "none"),
        default=None,
        help="CRC32 header on every S3 body (default: $S3_CHECKSUM or crc32)",
    )
    where.add_argument(
        "--s3-content-md5",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a Content-MD5 to every S3 body (default: $S3_CONTENT_MD5 or off)",
    )
    ffmpeg = parser.add_argument_group("ffmpeg")
    ffmpeg.add_argument("--ffmpeg", metavar="PATH", help="ffmpeg binary (default: discovered)")
    ffmpeg.add_argument(
        "--sandbox",
        choices=("auto", "require", "off"),
        default="auto",
        help="run ffmpeg under bubblewrap: auto (if it works), require, off",
    )


def _spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "command",
        nargs="+",
        metavar="COMMAND",
        help="ffmpeg command without 'ffmpeg', quoted as one argument; several run in order",
    )
    parser.add_argument(
        "-i",
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=URL_OR_PATH",
        help="an input file name used in COMMAND and where to get it (repeatable)",
    )
    parser.add_argument(
        "-o",
        "--output",
        dest="outputs",
        action="append",
        default=[],
        metavar="OUTPUT",
        help="an output file name from COMMAND; the first is the main one (repeatable)",
    )
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="your own command: check structure and declared files only (CommandPolicy.trusted)",
    )
    parser.add_argument(
        "--allow-private-networks",
        action="store_true",
        help="let URL inputs come from private or loopback addresses",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``ffmpeg-tasks`` argument parser (with ``worker`` when it is available)."""
    parser = argparse.ArgumentParser(
        prog="ffmpeg-tasks",
        description="Run FFmpeg tasks on remote or local files; store the outputs.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"ffmpeg-tasks {__version__}",
        help="print the version",
    )
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run one task and print the output URL",
        description="Run one task with a live progress bar and print the output URL.",
    )
    _spec_options(run)
    _backend_options(run)
    run.add_argument("--timeout", type=float, metavar="S", help="seconds ffmpeg may run")
    run.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help="seconds the whole task (fetch, run, store) may take (default: 6 hours)",
    )
    run.add_argument("--json", action="store_true", help="print the finished task as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="on failure, also print the tail of ffmpeg's own stderr",
    )
    run.add_argument(
        "--store",
        metavar="URL",
        default="memory",
        help="task store: memory (default), a SQLite path, redis://… or postgresql://…",
    )
    run.set_defaults(func=_cmd_run)

    plan = sub.add_parser(
        "plan",
        help="print the dry-run plan as JSON",
        description="Check the spec and print the argv, downloads and storage keys; runs nothing.",
    )
    _spec_options(plan)
    _backend_options(plan)
    plan.set_defaults(func=_cmd_plan)

    health = sub.add_parser(
        "health", help="print what works as JSON (exit 1 if degraded)", description="Check setup."
    )
    _backend_options(health)
    health.set_defaults(func=_cmd_health)

    try:
        from .backends.saq_worker import add_worker_parser
    except ImportError:  # the worker extra (saq) is not installed
        pass
    else:
        add_worker_parser(sub)
    return parser


def _commands_last(argv: Sequence[str]) -> list[str]:
    """Move quoted commands such as ``"-i in.mp4 out.mp4"`` behind ``--``.

    argparse would read a command starting with ``-i`` as the ``-i`` option.  An
    argument that starts with ``-`` and contains a space is a command, never an
    option or an option's value.
    """
    args = list(argv)
    if "--" in args or not args or args[0] not in ("run", "plan"):
        return args
    commands = [a for a in args[1:] if a.startswith("-") and " " in a.strip()]
    if not commands:
        return args
    rest = [a for a in args if not (a.startswith("-") and " " in a.strip())]
    return [*rest, "--", *commands]


# -- building the manager ----------------------------------------------------------


class _UsageError(Exception):
    """Bad command-line arguments; the message is printed and the exit status is 2."""


def _parse_inputs(items: Sequence[str]) -> tuple[dict[str, str], list[Path]]:
    """``NAME=URL_OR_PATH`` items -> (input_files, the local files named)."""
    inputs: dict[str, str] = {}
    local: list[Path] = []
    for item in items:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise _UsageError(f"input {item!r}: use NAME=URL or NAME=PATH")
        if name in inputs:
            raise _UsageError(f"input {name!r} is given twice")
        if "://" in where:
            if where.lower().startswith("file:"):
                raise _UsageError(f"input {name}={where}: give a local file as a plain path")
            inputs[name] = where
            continue
        path = Path(where).expanduser()
        if not path.is_file():
            raise _UsageError(f"input {name}={where}: no such file")
        resolved = path.resolve()
        inputs[name] = str(resolved)
        local.append(resolved)
    return inputs, local


def _downloaders(
    args: argparse.Namespace, inputs: Mapping[str, str], local: Sequence[Path], storage: Any
) -> dict[str, Downloader]:
    """One downloader per kind of input the person at the terminal named."""
    from .downloader.http import HttpDownloader

    http = HttpDownloader(allow_private_networks=getattr(args, "allow_private_networks", False))
    mounts: dict[str, Downloader] = {"http": http, "https": http}
    if local:  # the named files' directories: nothing else on this machine
        mounts["file"] = LocalFileDownloader(roots=sorted({str(p.parent) for p in local}))
    buckets = sorted({u[5:].partition("/")[0] for u in inputs.values() if u.startswith("s3://")})
    if buckets:
        from .downloader.s3 import S3Downloader
        from .storage.s3 import S3Storage

        if isinstance(storage, S3Storage):  # the same endpoint: one client for both
            mounts["s3"] = S3Downloader(buckets, client_from=storage)
        else:
            mounts["s3"] = S3Downloader(buckets, region=args.region, endpoint_url=args.endpoint_url)
    return mounts


def _make_manager(
    args: argparse.Namespace, inputs: Mapping[str, str], local: Sequence[Path] = ()
) -> Any:
    from .executor.local import LocalExecutor
    from .manager import TaskManager
    from .policy import CommandPolicy
    from .storage.base import Storage

    storage: Storage
    if args.s3_bucket:
        from .storage.s3 import S3Storage

        storage = S3Storage(
            args.s3_bucket,
            prefix=args.s3_prefix,
            region=args.region,
            endpoint_url=args.endpoint_url,
            **_s3_checksum_options(args),
        )
    else:
        from .storage.local import LocalStorage

        storage = LocalStorage(args.storage_dir)
    store = None
    if getattr(args, "store", "memory") != "memory":
        from .config import store_from_url

        store = store_from_url(args.store)
    return TaskManager(
        storage=storage,
        downloader=_downloaders(args, inputs, local, storage),
        executor=LocalExecutor(args.ffmpeg, sandbox=args.sandbox),
        store=store,
        policy=CommandPolicy.trusted() if getattr(args, "trusted", False) else None,
    )


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _error(message: str) -> None:
    print(f"ffmpeg-tasks: {message}", file=sys.stderr, flush=True)


# -- subcommands ---------------------------------------------------------------------


def _cmd_plan(args: argparse.Namespace) -> int:
    async def plan() -> int:
        inputs, local = _parse_inputs(args.inputs)
        async with _make_manager(args, inputs, local) as tm:
            result = await tm.plan(args.command, inputs, output_files=args.outputs or None)
        _print_json(result.to_dict())
        return EXIT_OK

    return _guard(plan)


def _cmd_health(args: argparse.Namespace) -> int:
    async def health() -> int:
        async with _make_manager(args, {}) as tm:
            report = await tm.health()
        _print_json(report)
        return EXIT_OK if report.get("status") == "ok" else EXIT_FAILED

    return _guard(health)


def _cmd_run(args: argparse.Namespace) -> int:
    return _guard(lambda: _run(args), json_errors=args.json)


async def _run(args: argparse.Namespace) -> int:
    from .progressbar import PlainBar, follow

    inputs, local = _parse_inputs(args.inputs)
    if not args.outputs:
        raise _UsageError("name at least one output with -o OUTPUT")
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    try:
        async with _make_manager(args, inputs, local) as tm:
            task = await tm.register(
                args.command,
                inputs,
                output_files=args.outputs,
                timeout=args.timeout,
                deadline=args.deadline,
            )
            await tm.submit(task.id)
            if args.quiet:
                watch = asyncio.ensure_future(tm.wait(task.id))
            else:
                watch = asyncio.ensure_future(follow(tm, task.id, bar=_progress_bar(PlainBar)))
            stop = asyncio.ensure_future(interrupted.wait())
            await asyncio.wait({watch, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not watch.done():
                await cancel_and_wait(watch)
                final = await tm.cancel(task.id)
                _report(args, final)
                return EXIT_INTERRUPTED
            final = watch.result()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return _report(args, final)


def _progress_bar(plain: Callable[[], Any]) -> Any:
    """tqdm on a terminal when installed, plain lines otherwise."""
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=100, unit="%", file=sys.stderr, leave=True)
    return plain()


def _report(args: argparse.Namespace, task: Task) -> int:
    if args.json:
        _print_json(task.to_dict())
    if task.status is TaskStatus.COMPLETED:
        if not args.json:
            print(task.output_url)
        return EXIT_OK
    if task.status is TaskStatus.CANCELLED:
        _error(f"cancelled: task {task.id}")
        return EXIT_INTERRUPTED
    hint = ""
    if task.error_code == "blocked_address" and not args.allow_private_networks:
        hint = " (--allow-private-networks permits private addresses)"
    _error(f"failed: {task.error_code}: {task.error}{hint}")
    if args.verbose and task.diagnostics:
        print("ffmpeg said (last lines):", file=sys.stderr)
        print(task.diagnostics.rstrip("\n"), file=sys.stderr, flush=True)
    return EXIT_FAILED


def _guard(fn: Callable[[], Any], *, json_errors: bool = False) -> int:
    """Run ``fn()``'s coroutine; map usage and spec errors to exit status 2.

    With ``json_errors`` (``--json``) an error is also printed on stdout as
    ``{"error": message, "code": code}``, so a script reading stdout always gets JSON.
    """
    try:
        result: int = asyncio.run(fn())
    except _UsageError as exc:
        return _fail(str(exc), "usage", EXIT_USAGE, json_errors)
    except (InvalidSpecError, ConfigurationError) as exc:
        return _fail(str(exc), exc.code, EXIT_USAGE, json_errors)
    except FFmpegTasksError as exc:
        return _fail(str(exc), exc.code, EXIT_FAILED, json_errors)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return result


def _fail(message: str, code: str, status: int, json_errors: bool) -> int:
    if json_errors:
        _print_json({"error": message, "code": code})
    _error(message if code == "usage" else f"{code}: {message}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ffmpeg-tasks`` console script; returns the exit status.

    Output into a pipe whose reader has gone (``… --json | head``) ends quietly with
    status 141 (128 + SIGPIPE), as a shell tool killed by SIGPIPE does.
    """
    parser = build_parser()
    args = parser.parse_args(_commands_last(sys.argv[1:] if argv is None else argv))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        status = func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would print another BrokenPipeError when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return status


if __name__ == "__main__":
    sys.exit(main())
