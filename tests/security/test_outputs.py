"""Only declared outputs and predicted sidecars are stored: regular files in the work dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ffmpeg_tasks import OutputError
from ffmpeg_tasks.outputs import collect_outputs, pattern_to_glob
from ffmpeg_tasks.storage.content_types import content_type_for


def test_symlinked_output_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(secret, work / "out.mp4")
    with pytest.raises(OutputError) as info:
        collect_outputs(work, ["out.mp4"], [])
    assert info.value.code == "output_missing"
    assert "not a regular file" in str(info.value)


def test_sidecar_globs_skip_symlinks_dirs_inputs_and_partial_files(tmp_path: Path) -> None:
    (tmp_path / "out.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "seg_000.ts").write_bytes(b"x")
    (tmp_path / "seg_001.ts").write_bytes(b"x")
    os.symlink("/etc/passwd", tmp_path / "seg_002.ts")
    (tmp_path / "seg_003.ts").mkdir()
    (tmp_path / "in.ts").write_bytes(b"input")
    (tmp_path / "seg_004.ts.part").write_bytes(b"x")
    found = collect_outputs(tmp_path, ["out.m3u8"], ["seg_*.ts", "*.ts"], exclude={"in.ts"})
    assert [name for name, _ in found] == ["out.m3u8", "seg_000.ts", "seg_001.ts"]
    assert (tmp_path / "in.ts").exists()


def test_delete_excluded_removes_the_inputs_first(tmp_path: Path) -> None:
    (tmp_path / "in.ts").write_bytes(b"input")
    (tmp_path / "out.ts").write_bytes(b"output")
    found = collect_outputs(
        tmp_path, ["out.ts"], ["*.ts"], exclude={"in.ts", "gone.ts"}, delete_excluded=True
    )
    assert [name for name, _ in found] == ["out.ts"]
    assert sorted(os.listdir(tmp_path)) == ["out.ts"]


def test_missing_and_empty_outputs(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="was not produced"):
        collect_outputs(tmp_path, ["out.mp4"], [])
    (tmp_path / "out.mp4").write_bytes(b"")
    with pytest.raises(OutputError, match="is empty"):
        collect_outputs(tmp_path, ["out.mp4"], [])
    with pytest.raises(OutputError, match="matched no file"):
        collect_outputs(tmp_path, ["thumb_%03d.jpg"], [])


def test_patterns_become_globs() -> None:
    assert pattern_to_glob("thumb_%03d.jpg") == "thumb_[0-9][0-9][0-9]*.jpg"
    assert pattern_to_glob("seg%d.ts") == "seg[0-9]*.ts"
    assert pattern_to_glob("out.mp4") is None


@pytest.mark.parametrize("name", ["a.html", "a.htm", "a.svg", "a.xhtml", "a.js", "a.xml", "a"])
def test_content_type_is_never_renderable_html(name: str) -> None:
    assert "html" not in content_type_for(name)
    assert "javascript" not in content_type_for(name)
