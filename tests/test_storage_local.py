"""LocalStorage, MemoryStorage and the content-type table."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from ffmpeg_tasks.errors import StorageError
from ffmpeg_tasks.storage.content_types import content_type_for
from ffmpeg_tasks.storage.local import LocalStorage
from ffmpeg_tasks.storage.memory import MemoryStorage

MiB = 1024 * 1024


def _file_url_path(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file"
    return Path(url2pathname(parsed.path))


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def storage(root: Path) -> LocalStorage:
    return LocalStorage(root)


async def test_put_copies_and_file_url_is_readable(
    storage: LocalStorage, root: Path, media_dir: Path
) -> None:
    src = media_dir / "clip.mp4"
    seen: list[tuple[int, int]] = []
    stored = await storage.put(
        src,
        "task1/sub/clip.mp4",
        content_type="video/mp4",
        progress=lambda d, t: seen.append((d, t)),
    )
    await asyncio.sleep(0)  # progress is delivered through the loop
    size = src.stat().st_size
    assert stored.key == "task1/sub/clip.mp4"
    assert stored.size == size
    assert stored.url.startswith("file://")
    assert stored.uri == stored.url
    assert _file_url_path(stored.url).read_bytes() == src.read_bytes()
    assert (root / "task1" / "sub" / "clip.mp4").read_bytes() == src.read_bytes()
    assert await storage.url("task1/sub/clip.mp4") == stored.url
    assert seen[-1] == (size, size)
    assert _all_files(root) == ["task1/sub/clip.mp4"]  # no temp file left


async def test_url_with_base_url(root: Path, media_dir: Path) -> None:
    storage = LocalStorage(root, base_url="https://media.example.com/files/")
    stored = await storage.put(media_dir / "logo.png", "t/a logo.png", content_type="image/png")
    assert stored.url == "https://media.example.com/files/t/a%20logo.png"
    assert _file_url_path(stored.uri) == root / "t" / "a logo.png"


async def test_replace_is_atomic_rename_not_in_place_write(
    storage: LocalStorage, root: Path, media_dir: Path, tmp_path: Path
) -> None:
    await storage.put(media_dir / "subs.srt", "t/out.bin", content_type="x")
    dest = root / "t" / "out.bin"
    old = dest.read_bytes()
    # A hard link to the old file keeps its content only if the new one is renamed in.
    keep = tmp_path / "keep"
    os.link(dest, keep)
    await storage.put(media_dir / "logo.png", "t/out.bin", content_type="x")
    assert dest.read_bytes() == (media_dir / "logo.png").read_bytes()
    assert keep.read_bytes() == old
    assert _all_files(root) == ["t/out.bin"]


async def test_cancelled_put_leaves_nothing(
    storage: LocalStorage, root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(64 * MiB))
    started = asyncio.Event()
    put = asyncio.create_task(
        storage.put(src, "t/big.bin", content_type="x", progress=lambda d, t: started.set())
    )
    await started.wait()
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    # Whether the copy was stopped midway or had just finished, nothing stays.
    assert _all_files(root) == []


@pytest.mark.parametrize(
    "key",
    ["../escape.mp4", "t/../../escape.mp4", "/etc/escape.mp4", "t\\..\\x.mp4", "t/x\x00.mp4",
     "", "t//x.mp4", "./x.mp4", "t/."],
)  # fmt: skip
async def test_traversal_keys_refused(
    storage: LocalStorage, tmp_path: Path, media_dir: Path, key: str
) -> None:
    with pytest.raises(StorageError) as info:
        await storage.put(media_dir / "logo.png", key, content_type="image/png")
    assert info.value.code == "invalid_key"
    assert repr(key) in str(info.value)
    assert not (tmp_path / "escape.mp4").exists()
    with pytest.raises(StorageError):
        await storage.url(key)
    with pytest.raises(StorageError):
        await storage.delete(key)


async def test_symlinked_directory_in_destination_not_followed(
    storage: LocalStorage, root: Path, tmp_path: Path, media_dir: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "t").symlink_to(outside)
    with pytest.raises(StorageError) as info:
        await storage.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
    assert "symlink" in str(info.value)
    assert "'t/logo.png'" in str(info.value)
    assert list(outside.iterdir()) == []
    # A deeper symlink is refused too.
    (root / "a").mkdir()
    (root / "a" / "b").symlink_to(outside)
    with pytest.raises(StorageError):
        await storage.put(media_dir / "logo.png", "a/b/c/logo.png", content_type="image/png")
    assert list(outside.iterdir()) == []
    # delete does not follow it either
    (outside / "victim").write_text("keep me")
    with pytest.raises(StorageError):
        await storage.delete("t/victim")
    assert (outside / "victim").read_text() == "keep me"


async def test_symlink_at_destination_name_is_replaced_not_followed(
    storage: LocalStorage, root: Path, tmp_path: Path, media_dir: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "t").mkdir(parents=True)
    (root / "t" / "out.png").symlink_to(victim)
    await storage.put(media_dir / "logo.png", "t/out.png", content_type="image/png")
    assert victim.read_text() == "precious"
    dest = root / "t" / "out.png"
    assert not dest.is_symlink()
    assert dest.read_bytes() == (media_dir / "logo.png").read_bytes()


async def test_symlink_source_refused(storage: LocalStorage, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    link = tmp_path / "out.mp4"
    link.symlink_to(secret)
    with pytest.raises(StorageError) as info:
        await storage.put(link, "t/out.mp4", content_type="video/mp4")
    assert "'out.mp4'" in str(info.value)
    assert "symlink" in str(info.value)
    assert str(tmp_path) not in str(info.value)  # no host path reaches the task's caller


async def test_missing_source(storage: LocalStorage, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        await storage.put(tmp_path / "nope.mp4", "t/nope.mp4", content_type="video/mp4")
    assert "nope.mp4" in str(info.value)


async def test_delete(storage: LocalStorage, root: Path, media_dir: Path) -> None:
    await storage.put(media_dir / "subs.srt", "t/subs.srt", content_type="application/x-subrip")
    await storage.delete("t/subs.srt")
    assert not (root / "t" / "subs.srt").exists()
    await storage.delete("t/subs.srt")
    await storage.delete("never/was.mp4")


async def test_check(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StorageError) as info:
        await LocalStorage(afile).check()
    assert (
        str(info.value)
        == "cannot use the storage directory: the storage directory is not a directory"
    )
    with pytest.raises(StorageError, match="a parent of it is not a directory"):
        await LocalStorage(afile / "below").check()


async def test_a_failing_put_names_no_host_path(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    src = tmp_path / "src"
    src.write_bytes(b"data")
    for root in (afile, afile / "below"):
        with pytest.raises(StorageError) as info:
            await LocalStorage(root).put(src, "t/out.bin", content_type="x")
        assert str(tmp_path) not in str(info.value), info.value


async def test_check_creates_nothing_the_first_put_creates_the_root(tmp_path: Path) -> None:
    """``health()`` must not leave an empty storage directory behind."""
    root = tmp_path / "new" / "dir"
    storage = LocalStorage(root)
    await storage.check()
    assert not (tmp_path / "new").exists()
    src = tmp_path / "src"
    src.write_bytes(b"data")
    await storage.put(src, "t/out.bin", content_type="x")
    assert (root / "t" / "out.bin").read_bytes() == b"data"


async def test_empty_file(storage: LocalStorage, root: Path, tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    stored = await storage.put(src, "t/empty", content_type="x")
    assert stored.size == 0
    assert (root / "t" / "empty").read_bytes() == b""


def test_default_root_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FFMPEG_TASKS_STORAGE_DIR", str(tmp_path / "env-root"))
    assert LocalStorage().root == tmp_path / "env-root"
    monkeypatch.delenv("FFMPEG_TASKS_STORAGE_DIR")
    monkeypatch.chdir(tmp_path)
    assert LocalStorage().root == tmp_path / "ffmpeg-tasks-output"


# -- MemoryStorage ---------------------------------------------------------------


async def test_memory_storage(media_dir: Path) -> None:
    async with MemoryStorage() as storage:
        stored = await storage.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
        assert stored.url == "memory://t/logo.png"
        assert storage.objects["t/logo.png"] == (media_dir / "logo.png").read_bytes()
        assert storage.content_types["t/logo.png"] == "image/png"
        assert await storage.url("t/logo.png") == "memory://t/logo.png"
        await storage.delete("t/logo.png")
        assert storage.objects == {}
        with pytest.raises(StorageError):
            await storage.url("t/logo.png")


async def test_memory_storage_failure(media_dir: Path) -> None:
    storage = MemoryStorage(fail_with=StorageError("bucket on fire", transient=True))
    with pytest.raises(StorageError, match="bucket on fire"):
        await storage.put(media_dir / "logo.png", "t/logo.png", content_type="image/png")
    assert storage.objects == {}


# -- content types ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out.mp4", "video/mp4"),
        ("dir/OUT.MP4", "video/mp4"),
        ("a.m4a", "audio/mp4"),
        ("a.mkv", "video/x-matroska"),
        ("a.webm", "video/webm"),
        ("index.m3u8", "application/vnd.apple.mpegurl"),
        ("seg_001.ts", "video/mp2t"),
        ("chunk.m4s", "video/iso.segment"),
        ("manifest.mpd", "application/dash+xml"),
        ("a.mp3", "audio/mpeg"),
        ("a.wav", "audio/wav"),
        ("a.flac", "audio/flac"),
        ("a.opus", "audio/ogg"),
        ("a.gif", "image/gif"),
        ("a.jpeg", "image/jpeg"),
        ("a.jpg", "image/jpeg"),
        ("a.png", "image/png"),
        ("a.srt", "application/x-subrip"),
        ("a.vtt", "text/vtt"),
        ("a.json", "application/json"),
        ("noext", "application/octet-stream"),
        (".mp4", "application/octet-stream"),
        ("a.unknown", "application/octet-stream"),
    ],
)
def test_content_type_for(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


@pytest.mark.parametrize(
    "name", ["x.svg", "x.svgz", "x.html", "x.htm", "x.xhtml", "x.xml", "x.js", "x.mjs", "x.pdf"]
)
def test_no_browser_renderable_types(name: str) -> None:
    assert content_type_for(name) == "application/octet-stream"


def test_table_never_maps_to_active_content() -> None:
    from ffmpeg_tasks.storage.content_types import CONTENT_TYPES, is_browser_renderable

    for ext, ctype in CONTENT_TYPES.items():
        assert "html" not in ctype, ext
        assert "svg" not in ctype, ext
        assert "javascript" not in ctype, ext
        # The only XML type is the DASH manifest, flagged so S3 serves it as attachment.
        assert is_browser_renderable(ctype) == (ext == "mpd"), ext


@pytest.mark.parametrize(
    ("ctype", "renderable"),
    [
        ("text/html; charset=utf-8", True),
        ("image/svg+xml", True),
        ("application/dash+xml", True),
        ("Application/XML", True),
        ("text/javascript", True),
        ("video/mp4", False),
        ("application/vnd.apple.mpegurl", False),
        ("text/vtt", False),
        ("application/octet-stream", False),
    ],
)
def test_is_browser_renderable(ctype: str, renderable: bool) -> None:
    from ffmpeg_tasks.storage.content_types import is_browser_renderable

    assert is_browser_renderable(ctype) is renderable
