"""ffprobe never describes a host file: issue 13, finding 1.  Real ffmpeg, ffprobe, bubblewrap.

Each defence is tested on its own, then the attacks end to end through a ``TaskManager``
with the sandbox on and off:

* the command policy refuses ``-hls_base_url`` pointing at host paths (tested with the
  policy); here an ``_Injecting`` policy puts it back, so the layers below must hold alone;
* output check (``output_types``): an output's bytes must be what its name says
  (``output_format_mismatch``), and a playlist may only reference this task's files
  (``output_reference_not_allowed``) — before anything parses them;
* ffprobe's ``-format_whitelist`` is the format the output's name implies;
* the sandbox: ffprobe runs through ``Executor.probe`` in the same bubblewrap as ffmpeg,
  which sees only the work dir.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from ffmpeg_tasks import (
    CommandPlan,
    CommandPolicy,
    CommandRejectedError,
    ExecutionTimeoutError,
    HttpDownloader,
    LocalExecutor,
    MemoryStorage,
    TaskManager,
    TaskStatus,
)
from ffmpeg_tasks.executor.sandbox import find_bwrap
from ffmpeg_tasks.ffmpeg import find_ffprobe
from ffmpeg_tasks.probe import ffprobe_file

from ..conftest import Route
from ..servers import MediaServer

#: The host file's tell-tale stream: no work-dir file has this size or rate.
SECRET_W, SECRET_H, SECRET_FPS = 96, 64, 7
MODES = ["off", "require"]

needs_ffprobe = pytest.mark.skipif(find_ffprobe() is None, reason="no ffprobe")
needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory, ffmpeg_bin: str) -> Path:
    """A directory outside any work dir holding a video the task must never describe."""
    d = tmp_path_factory.mktemp("host-secrets")
    src = f"testsrc=size={SECRET_W}x{SECRET_H}:rate={SECRET_FPS}:duration=1"
    for name, extra in (("x.mp4", []), ("x.ts", ["-f", "mpegts"])):
        subprocess.run(
            [ffmpeg_bin, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src,
             "-c:v", "libx264", "-preset", "ultrafast", *extra, str(d / name)],
            check=True, timeout=60,
        )  # fmt: skip
    return d


def dash_manifest(target: Path) -> bytes:
    """A DASH manifest naming a host file; its first bytes pass the input sniffer of today."""
    return (
        b"<!-- not a playlist, honest -->\n"
        b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        b'mediaPresentationDuration="PT1S" minBufferTime="PT1S" '
        b'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period><AdaptationSet '
        b'mimeType="video/mp4"><Representation id="1" bandwidth="1000">'
        b"<BaseURL>file://" + str(target).encode() + b"</BaseURL><SegmentBase/>"
        b"</Representation></AdaptationSet></Period></MPD>\n"
    )


def hostile_playlist(target: Path) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{target}\n#EXT-X-ENDLIST\n"
    )


@attrs.frozen
class _Injecting(CommandPolicy):
    """The strict policy, then ``extra`` put before the last output: a policy bypass."""

    extra: tuple[str, ...] = ()

    def plan(
        self,
        command: str | Sequence[str],
        *,
        inputs: Collection[str],
        outputs: Collection[str],
        partial: bool = False,
    ) -> CommandPlan:
        plan = super().plan(command, inputs=inputs, outputs=outputs, partial=partial)
        *head, last = plan.args
        return attrs.evolve(plan, args=(*head, *self.extra, last))


def manager(tmp_path: Path, sandbox: str, **kwargs: Any) -> TaskManager:
    return TaskManager(
        work_dir=tmp_path / "work",
        storage=MemoryStorage(),
        executor=LocalExecutor(sandbox=sandbox),  # type: ignore[arg-type]
        downloader=HttpDownloader(allow_private_networks=True),
        **kwargs,
    )


def describes_secret(metadata: Any) -> bool:
    """Whether any output's metadata carries the host file's stream."""
    for info in metadata.values():
        for s in info.get("streams", []):
            if (s.get("width"), s.get("height")) == (SECRET_W, SECRET_H):
                return True
            if s.get("fps") == SECRET_FPS:
                return True
    return False


# -- the sandbox alone: ffprobe through Executor.probe sees only the work dir --------------------


@needs_ffprobe
@needs_bwrap
async def test_sandboxed_probe_cannot_open_a_host_file(
    work: Path, host_dir: Path, ffprobe_bin: str
) -> None:
    """No whitelist and no output check here: only the sandbox stands between."""
    (work / "output.m3u8").write_text(hostile_playlist(host_dir / "x.ts"))
    argv = ["-v", "error", "-show_streams", "-of", "json", "file:output.m3u8"]
    async with LocalExecutor(sandbox="require") as ex:
        confined = await ex.probe(argv, work, program=ffprobe_bin)
    assert f'"width": {SECRET_W}' not in confined.stdout.decode()
    async with LocalExecutor(sandbox="off") as ex:  # the control: unconfined, it reads it
        loose = await ex.probe(argv, work, program=ffprobe_bin)
    assert loose.returncode == 0
    assert json.loads(loose.stdout)["streams"][0]["width"] == SECRET_W


@needs_bwrap
async def test_probe_runs_under_the_same_confinement_as_ffmpeg(work: Path, host_dir: Path) -> None:
    """``cat`` as the probe program shows what any probe sees: env, rlimits, files."""
    async with LocalExecutor(sandbox="require") as ex:

        async def cat(path: str) -> str:
            result = await ex.probe([path], work, program="/bin/cat")
            return result.stdout.decode() if result.returncode == 0 else ""

        environ = sorted(v.split("=", 1)[0] for v in (await cat("/proc/self/environ")).split("\0"))
        limits = await cat("/proc/self/limits")
        secret = await cat(str(host_dir / "x.ts"))
        assert ex.running == 0  # probes are not counted as ffmpeg runs
    assert {k for k in environ if k} == {"HOME", "LANG", "PATH", "PWD"}  # as ffmpeg's
    assert "4294967296" in next(line for line in limits.splitlines() if "address space" in line)
    assert secret == ""


# -- the format whitelist alone -------------------------------------------------------------------


@needs_ffprobe
async def test_ffprobe_is_limited_to_the_format_the_name_implies(
    work: Path, host_dir: Path, ffprobe_bin: str
) -> None:
    """Sandbox off and no output check: the whitelist ("mov" for .mp4) refuses the manifest."""
    (work / "output.mp4").write_bytes(dash_manifest(host_dir / "x.mp4"))
    async with LocalExecutor(sandbox="off") as ex:
        assert await ffprobe_file(ex, ffprobe_bin, work / "output.mp4") is None
        (work / "output.m3u8").write_text(hostile_playlist(host_dir / "x.mp4"))
        # .m3u8 allows hls, mpegts and mov, so only the sandbox or the output check stop this
        leaked = await ffprobe_file(ex, ffprobe_bin, work / "output.m3u8")
    assert leaked is not None and describes_secret({"output.m3u8": leaked})


# -- end to end through a TaskManager ------------------------------------------------------------


@needs_ffprobe
@pytest.mark.parametrize("sandbox", MODES)
async def test_hls_base_url_to_a_host_dir_is_refused(
    tmp_path: Path, media_server: MediaServer, host_dir: Path, sandbox: str
) -> None:
    """Layer: playlist references.  x.ts is real MPEG-TS, so only the playlist is wrong."""
    policy = _Injecting(extra=("-hls_base_url", f"{host_dir}/"))
    async with manager(tmp_path, sandbox, policy=policy) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy -f hls -hls_flags single_file -hls_segment_filename x.ts "
            "output.m3u8",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "output.m3u8",
        )
        stored = dict(tm.storage.objects)  # type: ignore[attr-defined]
    assert task.status is TaskStatus.FAILED, task.metadata
    assert task.error_code == "output_reference_not_allowed"
    assert "output.m3u8" in (task.error or "")
    assert "an absolute path" in (task.error or "")
    assert str(host_dir) not in (task.error or "")
    assert not describes_secret(task.metadata)
    assert stored == {}


@needs_ffprobe
@pytest.mark.parametrize("sandbox", MODES)
async def test_hls_base_url_attack_as_reported_is_refused(
    tmp_path: Path, media_server: MediaServer, host_dir: Path, sandbox: str
) -> None:
    """The command of the report: its x.mp4 segment holds MPEG-TS, not MP4."""
    policy = _Injecting(extra=("-hls_base_url", f"{host_dir}/"))
    async with manager(tmp_path, sandbox, policy=policy) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy -f hls -hls_flags single_file -hls_segment_filename x.mp4 "
            "output.m3u8",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "output.m3u8",
        )
    assert task.status is TaskStatus.FAILED, task.metadata
    assert task.error_code in ("output_format_mismatch", "output_reference_not_allowed")
    assert not describes_secret(task.metadata)


@needs_ffprobe
@pytest.mark.parametrize("sandbox", MODES)
async def test_downloaded_manifest_copied_into_an_mp4_is_refused(
    tmp_path: Path, route: Route, host_dir: Path, sandbox: str
) -> None:
    """``-f image2 -c copy`` copies the payload unchanged; ffprobe must never open it."""
    body = dash_manifest(host_dir / "x.mp4")

    async def payload(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/png")

    async with manager(tmp_path, sandbox) as tm:
        try:
            task = await tm.run(
                "-f image2 -i payload.png -c copy -f image2 output.mp4",
                {"payload.png": route(payload)},
                "output.mp4",
            )
        except CommandRejectedError:
            return  # a stricter policy refuses it at plan time: also fine
    assert task.status is TaskStatus.FAILED, task.metadata
    # the input sniffer may catch the payload first; else the output check does
    assert task.error_code in ("output_format_mismatch", "input_type_mismatch")
    assert not describes_secret(task.metadata)


@needs_ffprobe
@pytest.mark.parametrize("sandbox", MODES)
async def test_output_check_holds_without_the_input_sniffer(
    tmp_path: Path, media_server: MediaServer, sandbox: str
) -> None:
    """Layer: output bytes vs name.  ffmpeg itself writes a DASH manifest named .mp4."""
    policy = _Injecting(extra=("-f", "dash"))
    async with manager(tmp_path, sandbox, policy=policy) as tm:
        task = await tm.run(
            "-i in.mp4 -c copy output.mp4",
            {"in.mp4": media_server.media_url("clip.mp4")},
            "output.mp4",
        )
    assert task.status is TaskStatus.FAILED, task.metadata
    assert task.error_code == "output_format_mismatch"
    assert task.error == (
        "output 'output.mp4' is not an MP4/QuickTime file "
        "(its bytes look like an XML document such as a DASH manifest)"
    )


@pytest.mark.parametrize("sandbox", MODES)
async def test_a_chain_step_cannot_hand_a_disguised_file_to_the_next(
    tmp_path: Path, media_server: MediaServer, sandbox: str
) -> None:
    """Intermediate outputs are checked before the next step reads them."""
    policy = _Injecting(extra=("-f", "dash"))
    async with manager(tmp_path, sandbox, policy=policy) as tm:
        task = await tm.run(
            ["-i in.mp4 -c copy mid.mp4", "-i mid.mp4 -c copy out.mkv"],
            {"in.mp4": media_server.media_url("clip.mp4")},
            output_files=["out.mkv", "mid.mp4"],
        )
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "output_format_mismatch"
    assert "'mid.mp4'" in (task.error or "")


@needs_ffprobe
@pytest.mark.parametrize("sandbox", MODES)
@pytest.mark.parametrize(
    ("command", "output"),
    [
        ("-i in.mp4 -c copy -f hls -hls_time 1 out.m3u8", "out.m3u8"),
        ("-i in.mp4 -c copy -f hls -hls_segment_type fmp4 -hls_time 1 out.m3u8", "out.m3u8"),
        ("-i in.mp4 -c copy -f dash -hls_playlist 1 out.mpd", "out.mpd"),
    ],
    ids=["hls", "hls_fmp4", "dash"],
)
async def test_real_playlists_pass_and_are_probed(
    tmp_path: Path, media_server: MediaServer, sandbox: str, command: str, output: str
) -> None:
    async with manager(tmp_path, sandbox) as tm:
        task = await tm.run(command, {"in.mp4": media_server.media_url("clip.mp4")}, output)
    assert task.status is TaskStatus.COMPLETED, task.error
    meta = task.metadata[output]
    assert meta["format"] == ("hls" if output.endswith("m3u8") else "dash")
    assert meta["duration"] is not None and 1.5 < meta["duration"] < 2.5
    video = next(s for s in meta["streams"] if s["type"] == "video")
    assert (video["width"], video["height"]) == (320, 240)
    assert len(task.outputs) > 1  # segments stored beside it


# -- a probe is bounded like a run ----------------------------------------------------------------


@pytest.mark.parametrize("sandbox", ["off", "auto"])
async def test_a_probe_that_hangs_is_stopped(work: Path, sandbox: str) -> None:
    async with LocalExecutor(sandbox=sandbox, grace_period=0.5) as ex:  # type: ignore[arg-type]
        with pytest.raises(ExecutionTimeoutError, match="ffprobe ran longer"):
            await ex.probe(["30"], work, program="/bin/sleep", timeout=0.5)
        hung = asyncio.create_task(ex.probe(["30"], work, program="/bin/sleep", timeout=60))
        await asyncio.sleep(0.3)
    # leaving the block ran aclose(): the probe was stopped, not waited for
    assert hung.done()
    result = hung.result()
    assert result.returncode != 0
