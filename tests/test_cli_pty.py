"""``ffmpeg-tasks run`` in a real pseudo-terminal: the live bar a person sees, exit status 0.

The console script runs with an environment built here (nothing inherited from the
caller but the interpreter's own scripts directory): TERM, a UTF-8 locale, no
PYTHONUNBUFFERED, a 120x30 window.  stderr is the terminal, so the bar is tqdm's.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import sysconfig
import termios
from pathlib import Path

# A job of a few seconds: 10 s of 320x240 upscaled and encoded, progress every 0.1 s.
COMMAND = "-stats_period 0.1 -i in.mp4 -vf scale=640:-2 -c:v libx264 -preset fast -an out.mp4"
RUNNING = re.compile(
    r"running ffmpeg:\s+\d+%\|.*\| \[\d\d:\d\d, [\d.]+ fps, [\d.]+x, ETA \d\d:\d\d\]"
)
DONE = re.compile(r"completed in \d\d:\d\d: 100%\|█+\|")


def program() -> list[str]:
    """The installed ``ffmpeg-tasks`` script; ``python -m ffmpeg_tasks`` where there is none."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        script = Path(scripts) / "ffmpeg-tasks"
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    return [sys.executable, "-m", "ffmpeg_tasks"]


def terminal_env(home: Path) -> dict[str, str]:
    scripts = sysconfig.get_path("scripts")
    return {
        "PATH": f"{scripts}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }


def run_in_pty(args: list[str], *, cwd: Path, stdout: Path | None = None) -> tuple[int, str]:
    """Run with stdin and stderr (and stdout unless ``stdout`` names a file) on a new pty;
    return the exit status and everything written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    out = stdout.open("wb") if stdout is not None else None
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=terminal_env(cwd),
            stdin=slave,
            stdout=out if out is not None else slave,
            stderr=slave,
            start_new_session=True,
        )
    finally:
        os.close(slave)
        if out is not None:
            out.close()
    screen = bytearray()
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            screen += data
    finally:
        os.close(master)
        status = proc.wait(timeout=120)
    return status, screen.decode("utf-8", "replace")


def test_run_shows_live_progress_and_the_total_time(
    tmp_path: Path, media_dir: Path, ffmpeg_bin: str
) -> None:
    (tmp_path / "in.mp4").write_bytes((media_dir / "long.mp4").read_bytes())
    status, screen = run_in_pty(
        [*program(), "run", COMMAND, "-i", "in.mp4=in.mp4", "-o", "out.mp4",
         "--storage-dir", "store", "--ffmpeg", ffmpeg_bin],
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, screen
    assert RUNNING.search(screen), screen  # percent, fps, speed and ETA while ffmpeg runs
    assert DONE.search(screen), screen  # the last bar line: the task's total time
    assert "\r" in screen  # one bar redrawn in place, not a line per update
    url = screen.rstrip().splitlines()[-1].strip()
    assert url.startswith("file://") and url.endswith("/out.mp4"), screen
    stored = list((tmp_path / "store").rglob("out.mp4"))
    assert len(stored) == 1 and stored[0].stat().st_size > 10_000


def test_run_json_keeps_stdout_json_while_the_terminal_shows_the_bar(
    tmp_path: Path, media_dir: Path, ffmpeg_bin: str
) -> None:
    (tmp_path / "in.mp4").write_bytes((media_dir / "long.mp4").read_bytes())
    stdout = tmp_path / "task.json"
    status, screen = run_in_pty(
        [*program(), "run", COMMAND, "-i", "in.mp4=in.mp4", "-o", "out.mp4",
         "--storage-dir", "store", "--ffmpeg", ffmpeg_bin, "--json"],
        cwd=tmp_path,
        stdout=stdout,
    )  # fmt: skip
    assert status == 0, screen
    assert RUNNING.search(screen) and DONE.search(screen), screen
    task = json.loads(stdout.read_text(encoding="utf-8"))
    assert task["status"] == "completed"
    assert task["output_url"].endswith("/out.mp4")
    assert "file://" not in screen  # the result went to stdout only
