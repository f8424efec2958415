"""Workload definitions (W1-W4), their sizes, and the media they need.

Media is made with ffmpeg's lavfi sources into ``benchmarks/.work/media`` and reused
across runs when the sizes match.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import attrs

MiB = 1024 * 1024
GiB = 1024 * MiB

WORK = Path(__file__).resolve().parent / ".work"
MEDIA = WORK / "media"


@attrs.frozen
class Sizes:
    """Knobs for one benchmark run (``--quick`` shrinks them all)."""

    w1_seconds: int = 30  # 1080p30 source length for the CPU-bound transcode
    w1_preset: str = "veryfast"
    w2_bytes: int = 1 * GiB  # remux input
    w2_small_bytes: int = 10 * MiB  # the same remux, small: RSS must stay flat between the two
    w3_tasks: int = 200
    w3_concurrency: int = 2
    w4_inputs: int = 4
    w4_bytes: int = 128 * MiB  # each input
    latency_upload_bytes: int = 1 * GiB
    repeats: int = 3
    repeats_slow: int = 1  # for the variants that take longest (shell and replica on W3)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_seconds=5,
            w2_bytes=96 * MiB,
            w3_tasks=20,
            w4_bytes=24 * MiB,
            latency_upload_bytes=96 * MiB,
            repeats=1,
        )


@attrs.frozen
class Job:
    """One ffmpeg task: the command (no program name), inputs ``name -> media file``, output."""

    command: str
    inputs: dict[str, str]
    output: str

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Workload:
    name: str
    title: str
    jobs: tuple[Job, ...]
    concurrency: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "concurrency": self.concurrency,
            "jobs": [j.as_dict() for j in self.jobs],
        }


def _size_name(n: int) -> str:
    return f"{n // GiB}g" if n % GiB == 0 else f"{n // MiB}m"


def upload_file_name(s: Sizes) -> str:
    """The media file uploaded during the event-loop latency probe."""
    return f"remux_{_size_name(s.latency_upload_bytes)}.mp4"


def workloads(s: Sizes) -> dict[str, Workload]:
    transcode = Job(
        f"-i in.mp4 -vf scale=-2:720 -c:v libx264 -preset {s.w1_preset} -c:a copy out.mp4",
        {"in.mp4": f"w1_{s.w1_seconds}s.mp4"},
        "out.mp4",
    )
    w2 = f"remux_{_size_name(s.w2_bytes)}.mp4"
    w2s = f"remux_{_size_name(s.w2_small_bytes)}.mp4"
    names = [chr(ord("a") + i) + ".mp4" for i in range(s.w4_inputs)]
    maps = " ".join(f"-map {i}" for i in range(s.w4_inputs))
    w4 = Job(
        " ".join(f"-i {n}" for n in names) + f" {maps} -c copy out.mkv",
        {n: f"w4_{i}_{_size_name(s.w4_bytes)}.mp4" for i, n in enumerate(names)},
        "out.mkv",
    )
    frame = Job("-i in.mp4 -frames:v 1 out.jpg", {"in.mp4": "tiny.mp4"}, "out.jpg")
    return {
        "W1": Workload(
            "W1", f"transcode 1080p {s.w1_seconds} s -> 720p libx264 ({s.w1_preset})", (transcode,)
        ),
        "W2": Workload(
            "W2",
            f"remux -c copy of a {_size_name(s.w2_bytes).upper()}iB file",
            (Job("-i in.mp4 -c copy out.mp4", {"in.mp4": w2}, "out.mp4"),),
        ),
        "W2s": Workload(
            "W2s",
            f"remux -c copy of a {_size_name(s.w2_small_bytes).upper()}iB file",
            (Job("-i in.mp4 -c copy out.mp4", {"in.mp4": w2s}, "out.mp4"),),
        ),
        "W3": Workload(
            "W3",
            f"{s.w3_tasks} tiny tasks (one frame each), concurrency {s.w3_concurrency}",
            tuple(frame for _ in range(s.w3_tasks)),
            concurrency=s.w3_concurrency,
        ),
        "W4": Workload(
            "W4",
            f"{s.w4_inputs} inputs of {_size_name(s.w4_bytes).upper()}iB, muxed -c copy",
            (w4,),
        ),
    }


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-hide_banner", "-loglevel", "error", *args], check=True
    )


def make_media(s: Sizes) -> dict[str, Path]:
    """Create every media file the workloads of ``s`` need (skipped if present)."""
    MEDIA.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}

    def target(name: str) -> Path | None:
        path = MEDIA / name
        made[name] = path
        return None if path.exists() else path

    if p := target("tiny.mp4"):
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2",
            "-f", "lavfi", "-i", "sine=f=440:d=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(p),
        )  # fmt: skip
    if p := target(f"w1_{s.w1_seconds}s.mp4"):
        _ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={s.w1_seconds}",
            "-f", "lavfi", "-i", f"sine=f=440:d={s.w1_seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac",
            "-shortest", str(p),
        )  # fmt: skip
    base = MEDIA / "highrate_base.mp4"
    if not base.exists():
        # ~10 s of noisy 1080p at a high bitrate; looped with -c copy into the big files.
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=10,noise=alls=12:allf=t",
            "-f", "lavfi", "-i", "sine=f=330:d=10",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", "-g", "60",
            "-c:a", "aac", "-shortest", str(base),
        )  # fmt: skip
    remux_sizes = {s.w2_bytes, s.w2_small_bytes, s.latency_upload_bytes}
    sized = [(f"remux_{_size_name(n)}.mp4", n) for n in sorted(remux_sizes)]
    sized += [(f"w4_{i}_{_size_name(s.w4_bytes)}.mp4", s.w4_bytes) for i in range(s.w4_inputs)]
    for name, size in sized:
        if p := target(name):
            _ffmpeg(
                "-stream_loop", "-1", "-i", str(base), "-map", "0", "-c", "copy",
                "-fs", str(size), str(p),
            )  # fmt: skip
    (WORK / "media.json").write_text(json.dumps({k: str(v) for k, v in made.items()}, indent=1))
    return made
