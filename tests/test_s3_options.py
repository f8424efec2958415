"""``checksum`` / ``content_md5`` of S3Storage from the environment and the CLI."""

from __future__ import annotations

import asyncio

import pytest

from ffmpeg_tasks.cli import _s3_checksum_options, build_parser
from ffmpeg_tasks.config import settings_from_env
from ffmpeg_tasks.errors import ConfigurationError
from ffmpeg_tasks.storage.s3 import S3Storage


def _storage(env: dict[str, str]) -> S3Storage:
    settings = settings_from_env({"S3_BUCKET": "b", **env})
    storage = settings["storage"]
    assert isinstance(storage, S3Storage)
    for value in settings.values():  # nothing opened yet, but close what has aclose
        close = getattr(value, "aclose", None)
        if close is not None:
            asyncio.run(close())
    return storage


@pytest.mark.parametrize(
    ("env", "checksum", "md5"),
    [
        ({}, "crc32", False),
        ({"S3_CHECKSUM": "none"}, None, False),
        ({"S3_CHECKSUM": "CRC32", "S3_CONTENT_MD5": "1"}, "crc32", True),
        ({"S3_CHECKSUM": "None", "S3_CONTENT_MD5": "true"}, None, True),
    ],
)
def test_env(env: dict[str, str], checksum: str | None, md5: bool) -> None:
    storage = _storage(env)
    assert storage.checksum == checksum
    assert storage.content_md5 is md5


def test_bad_env_value_is_named() -> None:
    with pytest.raises(ConfigurationError, match="S3_CHECKSUM='md5'"):
        settings_from_env({"S3_BUCKET": "b", "S3_CHECKSUM": "md5"})


def _options(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    monkeypatch.delenv("S3_CHECKSUM", raising=False)
    monkeypatch.delenv("S3_CONTENT_MD5", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["health", "--s3-bucket", "b", *argv])
    return _s3_checksum_options(args)


def test_cli_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _options([], monkeypatch) == {"checksum": "crc32", "content_md5": False}
    assert _options(["--s3-checksum", "none", "--s3-content-md5"], monkeypatch) == {
        "checksum": None,
        "content_md5": True,
    }
    # The environment is the default; the command line wins.
    env = {"S3_CHECKSUM": "none", "S3_CONTENT_MD5": "1"}
    assert _options([], monkeypatch, **env) == {"checksum": None, "content_md5": True}
    assert _options(["--s3-checksum", "crc32", "--no-s3-content-md5"], monkeypatch, **env) == {
        "checksum": "crc32",
        "content_md5": False,
    }


def test_cli_refuses_an_unknown_checksum(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["health", "--s3-bucket", "b", "--s3-checksum", "md5"])
    assert "--s3-checksum" in capsys.readouterr().err
