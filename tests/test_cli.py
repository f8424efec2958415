"""The ``ffmpeg-tasks`` command line, run as ``python -m ffmpeg_tasks`` in a subprocess."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

import ffmpeg_tasks
from ffmpeg_tasks.cli import _commands_last, build_parser
from ffmpeg_tasks.store.sqlite import SQLiteTaskStore

from .servers import MediaServer

COPY = "-i in.mp4 -c copy out.mp4"
SCALE = "-i in.mp4 -vf scale=160:-2 -c:v libx264 -preset ultrafast -c:a copy out.mp4"


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ffmpeg_tasks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def url_path(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file", url
    return Path(unquote(parts.path))


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- run ---------------------------------------------------------------------------


def test_run_url_input_prints_the_stored_output(tmp_path: Path, media_server: MediaServer) -> None:
    out = tmp_path / "out"
    res = cli(
        "run",
        SCALE,
        "-i",
        f"in.mp4={media_server.media_url('clip.mp4')}",
        "-o",
        "out.mp4",
        "--storage-dir",
        str(out),
        "--allow-private-networks",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    url = res.stdout.strip().splitlines()[-1]
    path = url_path(url)
    assert path.name == "out.mp4"
    assert path.is_file() and path.stat().st_size > 1000
    assert path.parent.parent == out
    assert "completed" in res.stderr  # the plain progress lines (stderr is not a terminal)


def test_run_local_file_input_with_json(tmp_path: Path, media_dir: Path) -> None:
    src = tmp_path / "my clip.mp4"  # a space in the path, too
    src.write_bytes((media_dir / "clip.mp4").read_bytes())
    out = tmp_path / "out"
    res = cli(
        "run", COPY, "-i", f"in.mp4={src}", "-o", "out.mp4",
        "--storage-dir", str(out), "--json", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    task = json.loads(res.stdout)
    assert task["status"] == "completed"
    assert task["input_files"]["in.mp4"] == str(src)  # the absolute path, as named
    path = url_path(task["output_url"])
    assert path.is_file()
    assert path.stat().st_size > 0.5 * src.stat().st_size  # a stream copy of the clip
    assert task["metadata"]["out.mp4"]  # probed metadata came back
    assert res.stderr == ""  # -q: no progress


def test_run_relative_local_path(tmp_path: Path, media_dir: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.wav").write_bytes((media_dir / "tone.wav").read_bytes())
    res = cli(
        "run", "-i a.wav -c:a aac out.m4a", "-i", "a.wav=media/a.wav", "-o", "out.m4a",
        "--storage-dir", "out", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert url_path(res.stdout.strip()).is_file()


def test_run_to_s3(
    tmp_path: Path, media_dir: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    res = cli(
        "run", COPY, "-i", f"in.mp4={media_dir / 'clip.mp4'}", "-o", "out.mp4",
        "--s3-bucket", s3_bucket, "--s3-prefix", "cli", "--endpoint-url", s3_server.endpoint_url,
        "--region", "us-east-1", "--json", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    task = json.loads(res.stdout)
    assert task["output_uri"] == f"s3://{s3_bucket}/cli/{task['id']}/out.mp4"
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"cli/{task['id']}/out.mp4")
    assert head["ContentLength"] == task["outputs"][0]["size"] > 0


def test_run_hls_stores_every_segment(tmp_path: Path, media_dir: Path) -> None:
    command = (
        "-i in.mp4 -c:v libx264 -preset ultrafast -g 25 -c:a aac -f hls -hls_time 1 "
        "-hls_segment_filename seg_%03d.ts out.m3u8"
    )
    res = cli(
        "run", command, "-i", f"in.mp4={media_dir / 'clip.mp4'}", "-o", "out.m3u8",
        "--storage-dir", "out", "--json", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    task = json.loads(res.stdout)
    names = [o["name"] for o in task["outputs"]]
    assert names[0] == "out.m3u8"
    segments = [n for n in names if n.endswith(".ts")]
    assert len(segments) >= 2
    playlist = url_path(task["output_url"]).read_text()
    for seg in segments:
        assert seg in playlist
        assert (url_path(task["output_url"]).parent / seg).is_file()


def test_download_failure_exits_1_with_the_error_code(
    tmp_path: Path, media_server: MediaServer
) -> None:
    res = cli(
        "run", COPY, "-i", f"in.mp4={media_server.url('status/404')}", "-o", "out.mp4",
        "--storage-dir", "out", "--allow-private-networks", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    assert "download_http_error" in res.stderr
    assert "404" in res.stderr
    assert res.stdout == ""
    assert stored_files(tmp_path / "out") == []


def test_ffmpeg_failure_exits_1_and_json_has_the_code(tmp_path: Path, media_dir: Path) -> None:
    res = cli(
        "run", "-i in.mp4 -map 0:v:5 out.mp4", "-i", f"in.mp4={media_dir / 'clip.mp4'}",
        "-o", "out.mp4", "--storage-dir", "out", "--json", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    task = json.loads(res.stdout)
    assert task["status"] == "failed"
    assert task["error_code"]
    assert f"failed: {task['error_code']}: " in res.stderr
    assert "ffmpeg said" not in res.stderr


def test_the_old_home_of_local_file_downloader_still_imports() -> None:
    from ffmpeg_tasks import LocalFileDownloader as new
    from ffmpeg_tasks.cli import LocalFileDownloader as old

    assert old is new


def test_run_reads_s3_and_local_inputs_in_one_task(
    tmp_path: Path, media_dir: Path, s3_server: Any, s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(
        Bucket=s3_bucket, Key="in/clip.mp4", Body=(media_dir / "clip.mp4").read_bytes()
    )
    (tmp_path / "logo.png").write_bytes((media_dir / "logo.png").read_bytes())
    res = cli(
        "run", "-i in.mp4 -i logo.png -filter_complex overlay -c:v libx264 -preset ultrafast "
        "out.mp4", "-i", f"in.mp4=s3://{s3_bucket}/in/clip.mp4", "-i", "logo.png=./logo.png",
        "-o", "out.mp4", "--storage-dir", "out", "--endpoint-url", s3_server.endpoint_url,
        "--region", "us-east-1", "--json", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "completed"


def test_deadline_bounds_the_whole_task(tmp_path: Path) -> None:
    res = cli(
        "run", "-f lavfi -i testsrc2=s=1280x720:d=3600 -c:v libx264 -preset veryslow out.mp4",
        "-o", "out.mp4", "--storage-dir", "out", "-q", "--deadline", "1", "--sandbox", "off",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "failed: timeout: the task's deadline of 1s passed while running ffmpeg" in res.stderr


def test_verbose_prints_ffmpegs_own_words_on_failure(tmp_path: Path, media_dir: Path) -> None:
    res = cli(
        "run", "-i in.mp4 -map 0:v:5 out.mp4", "-i", f"in.mp4={media_dir / 'clip.mp4'}",
        "-o", "out.mp4", "--storage-dir", "out", "-q", "-v",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    said = res.stderr.split("ffmpeg said (last lines):\n", 1)[1]
    assert "0:v:5" in said  # ffmpeg's own complaint about the stream specifier


def test_private_address_is_refused_without_the_flag(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url = media_server.media_url("clip.mp4") + "?cli-blocked"
    res = cli(
        "run", COPY, "-i", f"in.mp4={url}", "-o", "out.mp4", "--storage-dir", "out", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    assert "blocked_address" in res.stderr
    assert "--allow-private-networks" in res.stderr
    assert not any("cli-blocked" in path for _, path, _ in media_server.requests)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("-i in.mp4 /tmp/evil.mp4", "path_not_allowed"),
        ("-i in.mp4 -i /etc/passwd out.mp4", "path_not_allowed"),
        ("-i in.mp4 -vf movie=/etc/passwd out.mp4", "filter_not_allowed"),
    ],
)
def test_rejected_command_exits_2(tmp_path: Path, media_dir: Path, command: str, code: str) -> None:
    res = cli(
        "run", command, "-i", f"in.mp4={media_dir / 'clip.mp4'}", "-o", "out.mp4",
        "--storage-dir", "out",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2
    assert code in res.stderr
    assert stored_files(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "in.mp4=clip.mp4"], "-o OUTPUT"),  # no output
        (["-i", "in.mp4", "-o", "out.mp4"], "NAME=URL"),
        (["-i", "in.mp4=does-not-exist.mp4", "-o", "out.mp4"], "no such file"),
        (["-i", "in.mp4=file:///etc/hostname", "-o", "out.mp4"], "plain path"),
        (["-i", "in.mp4=clip.mp4", "-i", "in.mp4=clip.mp4", "-o", "out.mp4"], "twice"),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, media_dir: Path, args: list[str], message: str) -> None:
    (tmp_path / "clip.mp4").write_bytes((media_dir / "clip.mp4").read_bytes())
    res = cli("run", COPY, *args, "--storage-dir", "out", cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr


def test_argparse_errors_exit_2(tmp_path: Path) -> None:
    res = cli("run", COPY, "--storage-dir", "a", "--s3-bucket", "b", cwd=tmp_path)
    assert res.returncode == 2
    assert "not allowed with argument" in res.stderr


def test_ctrl_c_cancels_the_task_and_exits_130(tmp_path: Path, media_dir: Path) -> None:
    # -re reads the 10 s input in real time, so the run is still going when we interrupt.
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "ffmpeg_tasks", "run",
            "-re -i in.mp4 -c:v libx264 -preset ultrafast out.mp4",
            "-i", f"in.mp4={media_dir / 'long.mp4'}", "-o", "out.mp4",
            "--storage-dir", "out", "--json",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("running ffmpeg"):
                break
        else:
            pytest.fail(f"ffmpeg never started: {seen}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "cancelled" in err
    task = json.loads(out)
    assert task["status"] == "cancelled"
    assert stored_files(tmp_path / "out") == []


def test_run_records_into_a_sqlite_store(tmp_path: Path, media_dir: Path) -> None:
    db = tmp_path / "tasks.db"
    res = cli(
        "run", COPY, "-i", f"in.mp4={media_dir / 'clip.mp4'}", "-o", "out.mp4",
        "--storage-dir", "out", "--store", str(db), "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr

    import asyncio

    async def read() -> list[Any]:
        async with SQLiteTaskStore(db) as store:
            return await store.list()

    (task,) = asyncio.run(read())
    assert task.status == "completed"
    assert task.output_url == res.stdout.strip()


# -- plan and health ------------------------------------------------------------------


def test_plan_prints_the_argv_as_json(
    tmp_path: Path, media_server: MediaServer, ffmpeg_bin: str
) -> None:
    url = media_server.media_url("clip.mp4") + "?cli-plan"
    res = cli("plan", SCALE, "-i", f"in.mp4={url}", "-o", "out.mp4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    (argv,) = plan["steps"]
    assert argv[0] == ffmpeg_bin  # the discovered binary, whatever its file name
    assert argv[argv.index("-i") + 1] == "in.mp4"
    assert "scale=160:-2" in argv
    assert argv[-1] == "out.mp4"
    assert plan["downloads"] == [{"name": "in.mp4", "url": url}]
    assert plan["storage_keys"] == ["<task_id>/out.mp4"]
    assert not any("cli-plan" in path for _, path, _ in media_server.requests)  # a dry run


def test_plan_of_a_rejected_command_exits_2(tmp_path: Path) -> None:
    res = cli(
        "plan", "-i in.mp4 -vf movie=/etc/passwd out.mp4", "-i", "in.mp4=https://example.com/a.mp4",
        "-o", "out.mp4",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2
    assert "movie" in res.stderr
    assert res.stdout == ""


def test_plan_of_chained_commands_keeps_their_order(tmp_path: Path) -> None:
    res = cli(
        "plan",
        "-i in.mp4 -c:v libx264 mid.mp4",
        "-i mid.mp4 -c copy out.mkv",
        "-i", "in.mp4=https://example.com/a.mp4", "-o", "out.mkv", "-o", "mid.mp4",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    steps = json.loads(res.stdout)["steps"]
    assert [s[-1] for s in steps] == ["mid.mp4", "out.mkv"]


def test_health_prints_json_and_exits_0(tmp_path: Path) -> None:
    res = cli("health", "--storage-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["status"] == "ok"
    assert report["ffmpeg"]["found"] is True
    assert report["storage"] == {"ok": True, "backend": "LocalStorage"}


def test_health_creates_no_storage_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FFMPEG_TASKS_STORAGE_DIR", raising=False)
    res = cli("health", cwd=tmp_path)
    report = json.loads(res.stdout)
    assert report["storage"] == {"ok": True, "backend": "LocalStorage"}, res.stderr
    assert os.listdir(tmp_path) == []  # no ./ffmpeg-tasks-output left behind


def test_version(tmp_path: Path) -> None:
    res = cli("--version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"ffmpeg-tasks {ffmpeg_tasks.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", ffmpeg_tasks.__version__)
    assert importlib.metadata.version("ffmpeg-tasks") == ffmpeg_tasks.__version__


@pytest.mark.parametrize(
    ("command", "args", "code", "status"),
    [
        ("-i in.mp4 -vf movie=/etc/passwd out.mp4", ["-o", "out.mp4"], "filter_not_allowed", 2),
        (COPY, [], "usage", 2),  # no -o
        (COPY, ["-o", "out.mp4", "--store", "nosuch://x"], "configuration_error", 2),
    ],
)
def test_run_json_errors_are_json_on_stdout(
    tmp_path: Path, media_dir: Path, command: str, args: list[str], code: str, status: int
) -> None:
    res = cli(
        "run", command, "-i", f"in.mp4={media_dir / 'clip.mp4'}", *args, "--json",
        "--storage-dir", "out",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == status, res.stderr
    report = json.loads(res.stdout)
    assert set(report) == {"error", "code"}
    assert report["code"] == code
    assert report["error"]
    assert report["error"] in res.stderr  # people still read stderr


@pytest.mark.parametrize("subcommand", ["run", "health"])
def test_a_closed_stdout_ends_quietly(tmp_path: Path, media_dir: Path, subcommand: str) -> None:
    """``ffmpeg-tasks run … --json | head``: the reader is gone before anything is printed."""
    args = ["health"]
    if subcommand == "run":
        args = ["run", COPY, "-i", f"in.mp4={media_dir / 'clip.mp4'}", "-o", "out.mp4", "--json",
                "-q"]  # fmt: skip
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write gets EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ffmpeg_tasks", *args, "--storage-dir", "out"],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr


def test_health_exits_1_when_storage_is_unreachable(tmp_path: Path, dead_endpoint: str) -> None:
    res = cli(
        "health", "--s3-bucket", "nope", "--endpoint-url", dead_endpoint, "--region", "us-east-1",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["status"] == "degraded"
    assert report["storage"]["ok"] is False
    assert report["storage"]["backend"] == "S3Storage"


# -- pieces, in process ------------------------------------------------------------------


def test_commands_that_start_with_a_dash_are_not_read_as_options() -> None:
    argv = _commands_last(["run", "-i in.mp4 out.mp4", "-i", "in.mp4=x.mp4", "-o", "out.mp4"])
    args = build_parser().parse_args(argv)
    assert args.command == ["-i in.mp4 out.mp4"]
    assert args.inputs == ["in.mp4=x.mp4"]
    assert args.outputs == ["out.mp4"]


# -- follow(): the progress bar ---------------------------------------------------------


def _manager(tmp_path: Path) -> Any:
    from ffmpeg_tasks import HttpDownloader, LocalStorage, RetryPolicy, TaskManager

    return TaskManager(
        storage=LocalStorage(tmp_path / "out"),
        downloader=HttpDownloader(allow_private_networks=True),
        retry=RetryPolicy.none(),
    )


async def test_follow_shows_phases_bytes_and_percent(
    tmp_path: Path, media_server: MediaServer
) -> None:
    import io

    from ffmpeg_tasks.progressbar import PlainBar, follow

    stream = io.StringIO()
    async with _manager(tmp_path) as tm:
        task = await tm.register(
            "-i in.mp4 -c:v libx264 -preset ultrafast out.mp4",
            {"in.mp4": media_server.media_url("long.mp4")},
            "out.mp4",
        )
        await tm.submit(task.id)
        final = await follow(tm, task.id, bar=PlainBar(stream))
    assert final.status == "completed"
    assert final.id == task.id
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("downloading ") and line.endswith(" MB") for line in lines)
    running = [line for line in lines if line.startswith("running ffmpeg ")]
    assert running
    assert any(re.search(r"\(\d+\.\d fps, \d+\.\d\dx, ETA \d\d:\d\d\)$", x) for x in running)
    assert any(line.startswith("uploading ") for line in lines)
    assert re.fullmatch(r"completed in \d\d:\d\d 100%", lines[-1])


async def test_follow_drives_a_tqdm_bar_and_shows_the_failure(
    tmp_path: Path, media_server: MediaServer
) -> None:
    import io

    from tqdm import tqdm

    from ffmpeg_tasks.progressbar import follow

    async with _manager(tmp_path) as tm:
        ok = await tm.register(COPY, {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4")
        bad = await tm.register(COPY, {"in.mp4": media_server.url("status/404")}, "out.mp4")
        for task in (ok, bad):
            await tm.submit(task.id)
        screen = io.StringIO()
        bar = tqdm(total=100, file=screen, mininterval=0)
        done = await follow(tm, ok.id, bar=bar)
        assert (done.status, bar.n) == ("completed", 100)
        assert re.fullmatch(r"completed in \d\d:\d\d", bar.desc)
        assert re.search(r"running ffmpeg: +\d+%\|.*\| \[\d\d:\d\d, [\d.]+ fps", screen.getvalue())
        assert str(bar).startswith(bar.desc + ": 100%|")  # the total, not a phase timer
        assert not bar.disable  # follow() leaves a bar it was given open
        bar2 = tqdm(total=100, file=io.StringIO())
        failed = await follow(tm, bad.id, bar=bar2)
        assert failed.status == "failed"
        assert re.fullmatch(r"failed: download_http_error in \d\d:\d\d", bar2.desc)
        bar.close()
        bar2.close()


async def test_follow_without_tqdm_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ffmpeg_tasks import ConfigurationError
    from ffmpeg_tasks.progressbar import follow

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import tqdm.auto -> ImportError
    async with _manager(tmp_path) as tm:
        with pytest.raises(ConfigurationError, match=r"ffmpeg-tasks\[progress\]"):
            await follow(tm, "no-such-task")
