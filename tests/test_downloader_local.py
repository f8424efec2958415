"""LocalFileDownloader: real files, real symlinks, real FIFOs; the kernel keeps it in its roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ffmpeg_tasks.downloader.local as local_module
from ffmpeg_tasks import DownloadError, DownloadTooLargeError, LocalFileDownloader


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.bin").write_bytes(b"media bytes")
    (tmp_path / "secret.txt").write_text("host secret")
    (root / "link-in").symlink_to("sub/clip.bin")
    (root / "link-out").symlink_to("../secret.txt")
    (root / "link-abs").symlink_to(tmp_path / "secret.txt")
    (root / "dir-out").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    (tmp_path / "work").mkdir()
    return tmp_path


@pytest.fixture(params=["openat2", "walk"])
def opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of opening beneath a root: the kernel's, and the component walk."""
    monkeypatch.setattr(
        local_module, "_openat2_works", None if request.param == "openat2" else False
    )
    return str(request.param)


async def test_paths_path_values_and_file_urls_are_read(tree: Path, opener: str) -> None:
    root = tree / "root"
    async with LocalFileDownloader(roots=[root]) as dl:
        for url in (
            str(root / "sub" / "clip.bin"),
            f"file://{root}/sub/clip.bin",
            f"file://localhost{root}/sub/clip.bin",
            str(root / "link-in"),  # a symlink that stays inside the root
        ):
            seen: list[tuple[int, int | None]] = []
            dest = tree / "work" / "in.bin"
            n = await dl.fetch(url, dest, progress=lambda d, t, seen=seen: seen.append((d, t)))
            assert dest.read_bytes() == b"media bytes" and n == 11, url
            assert seen == [(11, 11)]
            assert dl.last_method in ("reflink", "copy")


@pytest.mark.parametrize(
    ("name", "code", "why"),
    [
        ("link-out", "url_not_allowed", "leads out of the allowed directories (a symlink)"),
        ("link-abs", "url_not_allowed", "leads out of the allowed directories (a symlink)"),
        (
            "dir-out/secret.txt",
            "url_not_allowed",
            "leads out of the allowed directories (a symlink)",
        ),
        ("fifo", "url_not_allowed", "is not a regular file"),
        ("sub", "url_not_allowed", "is not a regular file"),
        ("missing.bin", "not_found", "no such file"),
    ],
)
async def test_what_the_kernel_refuses(
    tree: Path, opener: str, name: str, code: str, why: str
) -> None:
    url = str(tree / "root" / name)
    async with LocalFileDownloader(roots=[tree / "root"]) as dl:
        with pytest.raises(DownloadError) as info:
            await dl.fetch(url, tree / "work" / "in.bin")
    assert (info.value.code, str(info.value)) == (code, f"local input {url}: {why}")
    assert not list((tree / "work").iterdir())


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("{t}/secret.txt", "is outside the directories this manager may read"),
        ("{t}/root/../secret.txt", "has a '..' segment"),
        ("relative/clip.bin", "is not an absolute path or a file:// URL"),
        ("file://otherhost{t}/root/sub/clip.bin", "must be file:///absolute/path"),
        ("s3://bucket/key", "is not an absolute path or a file:// URL"),
    ],
)
def test_what_is_refused_before_anything_runs(tree: Path, url: str, why: str) -> None:
    url = url.format(t=tree)
    with pytest.raises(DownloadError) as info:
        LocalFileDownloader(roots=[tree / "root"]).check_input(url)
    assert info.value.code == "url_not_allowed"
    assert str(info.value).startswith(f"local input {url}: {why}")
    assert str(tree / "root") not in str(info.value).removeprefix(f"local input {url}")


async def test_size_caps(tree: Path) -> None:
    url = str(tree / "root" / "sub" / "clip.bin")
    async with LocalFileDownloader(roots=[tree / "root"], max_bytes=5) as dl:
        with pytest.raises(DownloadTooLargeError, match="more than the limit of 5"):
            await dl.fetch(url, tree / "work" / "in.bin")
    async with LocalFileDownloader(roots=[tree / "root"]) as dl:
        with pytest.raises(DownloadTooLargeError):
            await dl.fetch(url, tree / "work" / "in.bin", max_bytes=10)
    assert not list((tree / "work").iterdir())


def test_no_roots_read_nothing(tree: Path) -> None:
    with pytest.raises(DownloadError, match="has no roots"):
        LocalFileDownloader(roots=[]).check_input(str(tree / "root" / "sub" / "clip.bin"))


async def test_a_root_may_be_one_file(tree: Path) -> None:
    clip = tree / "root" / "sub" / "clip.bin"
    async with LocalFileDownloader(roots=[clip]) as dl:
        assert await dl.fetch(str(clip), tree / "work" / "in.bin") == 11
        with pytest.raises(DownloadError, match="outside the directories"):
            dl.check_input(str(tree / "root" / "sub" / "other.bin"))
    async with LocalFileDownloader(roots=[tree / "root" / "link-out"]) as dl:
        with pytest.raises(DownloadError, match="leads out of the allowed directories"):
            await dl.fetch(str(tree / "root" / "link-out"), tree / "work" / "x.bin")
