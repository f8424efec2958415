"""Everyday commands pass the STRICT policy and really run with ffmpeg in a work dir."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

from ffmpeg_tasks.policy import CommandPlan, CommandPolicy

FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
]

FAST264 = "-c:v libx264 -preset ultrafast"

# (id, command, inputs, outputs)
CASES: list[tuple[str, str, list[str], list[str]]] = [
    ("h264", f"-i clip.mp4 {FAST264} -crf 30 -c:a aac -b:a 64k out.mp4", ["clip.mp4"], ["out.mp4"]),
    (
        "h265",
        "-i clip.mp4 -t 0.5 -c:v libx265 -preset ultrafast -x265-params log-level=error:keyint=25 "
        "-tag:v hvc1 -an out.mp4",
        ["clip.mp4"],
        ["out.mp4"],
    ),
    (
        "vp9",
        "-i clip.mp4 -t 0.5 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 200k "
        "-c:a libopus out.webm",
        ["clip.mp4"],
        ["out.webm"],
    ),
    (
        "av1",
        "-i clip.mp4 -t 0.3 -vf scale=160:-2 -c:v libaom-av1 -cpu-used 8 -usage realtime "
        "-crf 50 -an out.mkv",
        ["clip.mp4"],
        ["out.mkv"],
    ),
    (
        "svtav1",
        "-i clip.mp4 -t 0.3 -c:v libsvtav1 -preset 12 -crf 50 -an out.mp4",
        ["clip.mp4"],
        ["out.mp4"],
    ),
    ("aac", "-i tone.wav -c:a aac -b:a 96k out.m4a", ["tone.wav"], ["out.m4a"]),
    ("opus", "-i tone.wav -c:a libopus -b:a 48k out.opus", ["tone.wav"], ["out.opus"]),
    ("mp3", "-i tone.wav -codec:a libmp3lame -qscale:a 4 out.mp3", ["tone.wav"], ["out.mp3"]),
    ("flac", "-i tone.wav -c:a flac -compression_level 5 out.flac", ["tone.wav"], ["out.flac"]),
    (
        "scale_crop_pad_fps",
        f"-i clip.mp4 -vf 'scale=160:-2,crop=140:100:10:10,"
        f"pad=160:120:(ow-iw)/2:(oh-ih)/2:black,fps=10' {FAST264} -an out.mp4",
        ["clip.mp4"],
        ["out.mp4"],
    ),
    ("thumbnail", "-ss 1 -i clip.mp4 -frames:v 1 -q:v 3 thumb.jpg", ["clip.mp4"], ["thumb.jpg"]),
    (
        "thumbs_sequence",
        "-i clip.mp4 -vf fps=2,scale=80:-1 thumb_%03d.jpg",
        ["clip.mp4"],
        ["thumb_%03d.jpg"],
    ),
    (
        "sequence_in",
        f"-framerate 5 -i frame_%03d.png {FAST264} -pix_fmt yuv420p seq.mp4",
        ["frame_001.png", "frame_002.png", "frame_003.png"],
        ["seq.mp4"],
    ),
    (
        "overlay",
        f"-i clip.mp4 -i logo.png -filter_complex "
        f"'[1:v]scale=32:32[lg];[0:v][lg]overlay=x=W-w-8:y=8[v]' -map '[v]' -map 0:a {FAST264} "
        "-c:a copy out.mp4",
        ["clip.mp4", "logo.png"],
        ["out.mp4"],
    ),
    (
        "multi_input_quoted",
        f"-i {{{{clip.mp4}}}} -i {{{{long.mp4}}}} -filter_complex "
        '"[0:v]scale=160:120,setsar=1[a];[1:v]trim=0:1,setpts=PTS-STARTPTS,scale=160:120,setsar=1[b];'
        "[a][b]hstack=inputs=2,drawbox=x=0:y=0:w=20:h=20:color='red@0.5':t=fill,"
        "format=pix_fmts='yuv420p|yuv444p'[v]\" "
        f"-map '[v]' {FAST264} out.mp4",
        ["clip.mp4", "long.mp4"],
        ["out.mp4"],
    ),
    ("trim_ss_t", f"-ss 0.5 -i long.mp4 -t 1 {FAST264} out.mp4", ["long.mp4"], ["out.mp4"]),
    (
        "trim_to",
        f"-i long.mp4 -ss 00:00:01 -to 00:00:02.5 {FAST264} out.mp4",
        ["long.mp4"],
        ["out.mp4"],
    ),
    (
        "audio_extract",
        "-i clip.mp4 -vn -acodec libmp3lame -ab 96k audio.mp3",
        ["clip.mp4"],
        ["audio.mp3"],
    ),
    (
        "subtitles_burn",
        f"-i clip.mp4 -vf subtitles={{{{subs.srt}}}} {FAST264} -c:a copy out.mp4",
        ["clip.mp4", "subs.srt"],
        ["out.mp4"],
    ),
    (
        "drawtext_font",
        "-i clip.mp4 -vf \"drawtext=fontfile=font.ttf:text='Hello; world, %{pts\\:hms}':"
        f'x=10:y=10:fontsize=20:fontcolor=white" {FAST264} out.mp4',
        ["clip.mp4", "font.ttf"],
        ["out.mp4"],
    ),
    (
        "concat_filter",
        "-i clip.mp4 -i clip2.mp4 -filter_complex "
        "'[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a]' -map '[v]' -map '[a]' "
        f"{FAST264} -c:a aac out.mp4",
        ["clip.mp4", "clip2.mp4"],
        ["out.mp4"],
    ),
    (
        "hls",
        f"-i clip.mp4 {FAST264} -c:a aac -f hls -hls_time 1 -hls_playlist_type vod "
        "-hls_segment_filename seg_%03d.ts out.m3u8",
        ["clip.mp4"],
        ["out.m3u8"],
    ),
    (
        "hls_default_names",
        f"-i clip.mp4 {FAST264} -c:a aac -hls_time 1 -hls_list_size 0 index.m3u8",
        ["clip.mp4"],
        ["index.m3u8"],
    ),
    (
        "dash",
        f"-i clip.mp4 {FAST264} -c:a aac -map 0 -f dash -seg_duration 1 -use_template 1 "
        "-use_timeline 1 -adaptation_sets 'id=0,streams=v id=1,streams=a' out.mpd",
        ["clip.mp4"],
        ["out.mpd"],
    ),
    (
        "map_metadata_faststart",
        f"-i clip.mp4 -map 0:v:0 -map 0:a? {FAST264} -c:a copy "
        "-metadata title='My title: a \"test\"' -metadata:s:a:0 language=eng "
        "-movflags +faststart out.mp4",
        ["clip.mp4"],
        ["out.mp4"],
    ),
    (
        "loudnorm",
        "-i tone.wav -af loudnorm=I=-16:TP=-1.5:LRA=11 -ar 48000 out.wav",
        ["tone.wav"],
        ["out.wav"],
    ),
    (
        "gif_palette",
        "-i clip.mp4 -filter_complex "
        "'[0:v]fps=5,scale=80:-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=32[p];"
        "[b][p]paletteuse=dither=bayer' -loop 0 out.gif",
        ["clip.mp4"],
        ["out.gif"],
    ),
    (
        "two_outputs",
        f"-i clip.mp4 {FAST264} -an small.mp4 -vn -c:a libopus small.opus",
        ["clip.mp4"],
        ["small.mp4", "small.opus"],
    ),
    (
        "lavfi_source",
        "-f lavfi -i color=c=blue:s=64x64:d=0.5 -i clip.mp4 -filter_complex "
        "'[1:v]scale=64:64[s];[0:v][s]overlay=shortest=1' -an " + FAST264 + " out.mp4",
        ["clip.mp4"],
        ["out.mp4"],
    ),
    (
        "dash_single_file",
        "-i clip.mp4 -c copy -map 0 -f dash -seg_duration 1 -single_file 1 single.mpd",
        ["clip.mp4"],
        ["single.mpd"],
    ),
    (
        "dash_single_file_name",
        "-i clip.mp4 -c copy -map 0 -f dash -single_file 1 "
        "-single_file_name media-$RepresentationID$.mp4 named.mpd",
        ["clip.mp4"],
        ["named.mpd"],
    ),
    (
        "segment_chunks",
        "-i clip.mp4 -c copy -map 0 -f segment -segment_time 1 -segment_format mp4 "
        "-reset_timestamps 1 -segment_list list.m3u8 -segment_list_type m3u8 chunk_%03d.mp4",
        ["clip.mp4"],
        ["chunk_%03d.mp4", "list.m3u8"],
    ),
    (
        "segment_audio_chunks",
        "-i tone.wav -c:a pcm_s16le -f segment -segment_time 0.5 part_%03d.wav",
        ["tone.wav"],
        ["part_%03d.wav"],
    ),
    (
        "showwavespic",
        "-i tone.wav -filter_complex showwavespic=s=640x120:colors=white -frames:v 1 wave.png",
        ["tone.wav"],
        ["wave.png"],
    ),
    (
        "showwaves_video",
        "-i tone.wav -filter_complex "
        "'[0:a]showwaves=s=320x120:mode=line:rate=25,format=yuv420p[v]' "
        f"-map '[v]' -map 0:a {FAST264} -c:a aac waves.mp4",
        ["tone.wav"],
        ["waves.mp4"],
    ),
    (
        "showspectrumpic",
        "-i tone.wav -lavfi showspectrumpic=s=320x240:legend=0 spectrum.png",
        ["tone.wav"],
        ["spectrum.png"],
    ),
    (
        "showfreqs_avectorscope",
        "-i tone.wav -filter_complex '[0:a]asplit[a][b];[a]showfreqs=s=160x120:rate=10[f];"
        "[b]avectorscope=s=160x120:r=10[s];[f][s]hstack,format=yuv420p[v]' "
        f"-map '[v]' {FAST264} visual.mp4",
        ["tone.wav"],
        ["visual.mp4"],
    ),
    (
        "ebur128_video",
        "-i tone.wav -filter_complex '[0:a]ebur128=video=1:size=640x480[v][a]' "
        f"-map '[v]' -map '[a]' {FAST264} -pix_fmt yuv420p -c:a aac meter.mp4",
        ["tone.wav"],
        ["meter.mp4"],
    ),
    (
        "threads_x264params",
        "-i clip.mp4 -threads 2 -c:v libx264 -preset veryfast -tune zerolatency "
        "-profile:v baseline -level 3.0 -pix_fmt yuv420p -g 25 -keyint_min 25 -bf 0 "
        "-x264-params scenecut=0:ref=1 -b:v 300k -maxrate 300k -bufsize 600k -an out.mp4",
        ["clip.mp4"],
        ["out.mp4"],
    ),
]


def _font() -> Path | None:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", "sans"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out and Path(out).is_file() and out.endswith(".ttf") else None


@pytest.fixture
def workdir(tmp_path: Path, media_dir: Path, ffmpeg_bin: str) -> Path:
    for item in media_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    shutil.copy(media_dir / "clip.mp4", tmp_path / "clip2.mp4")
    for i in range(1, 4):
        shutil.copy(media_dir / "logo.png", tmp_path / f"frame_{i:03d}.png")
    font = _font()
    if font is not None:
        shutil.copy(font, tmp_path / "font.ttf")
    return tmp_path


def run(ffmpeg_bin: str, plan: CommandPlan, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ffmpeg_bin, "-loglevel", "error", *plan.args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _produced(cwd: Path, pattern: str) -> list[Path]:
    return [p for p in cwd.iterdir() if fnmatch.fnmatchcase(p.name, pattern)]


@pytest.mark.parametrize(
    ("command", "inputs", "outputs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_strict_policy_allows_and_ffmpeg_runs(
    command: str, inputs: list[str], outputs: list[str], workdir: Path, ffmpeg_bin: str
) -> None:
    if "font.ttf" in inputs and not (workdir / "font.ttf").exists():
        pytest.skip("no TrueType font on this host")
    before = {p.name for p in workdir.iterdir()}
    plan = CommandPolicy().plan(command, inputs=inputs, outputs=outputs)
    assert plan.args[:3] == ("-nostdin", "-y", "-hide_banner")
    assert set(plan.outputs) == set(outputs)
    result = run(ffmpeg_bin, plan, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in outputs:
        files = _produced(workdir, name.replace("%03d", "*")) if "%" in name else [workdir / name]
        assert files, f"{name} not written"
        assert all(f.stat().st_size > 0 for f in files), name
    # every new file is a declared output or matches a sidecar glob
    new = {p.name for p in workdir.iterdir()} - before
    patterns = [o.replace("%03d", "*") for o in plan.outputs] + list(plan.sidecars)
    stray = [n for n in new if not any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
    assert not stray, f"files not covered by outputs/sidecars: {stray}"


def test_hls_sidecars_match_segments(workdir: Path, ffmpeg_bin: str) -> None:
    plan = CommandPolicy().plan(
        f"-i clip.mp4 {FAST264} -g 25 -c:a aac -f hls -hls_time 1 "
        "-hls_segment_filename seg_%03d.ts "
        "out.m3u8",
        inputs=["clip.mp4"],
        outputs=["out.m3u8"],
    )
    assert plan.sidecars == ("seg_*.ts",)
    assert run(ffmpeg_bin, plan, workdir).returncode == 0
    assert len(_produced(workdir, "seg_*.ts")) >= 2


def test_two_pass_as_two_plans(workdir: Path, ffmpeg_bin: str) -> None:
    policy = CommandPolicy()
    common = "-i clip.mp4 -c:v libx264 -preset ultrafast -b:v 200k -passlogfile stats"
    first = policy.plan(f"{common} -pass 1 -an -f null -", inputs=["clip.mp4"], outputs=[])
    assert first.outputs == ()
    # a discarded output still gets the library's duration cap
    assert first.args[-5:] == ("-f", "null", "-t", "21600", "-")
    second = policy.plan(
        f"{common} -pass 2 -c:a aac out.mp4", inputs=["clip.mp4"], outputs=["out.mp4"]
    )
    assert run(ffmpeg_bin, first, workdir).returncode == 0
    assert list(workdir.glob("stats*.log"))
    result = run(ffmpeg_bin, second, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workdir / "out.mp4").stat().st_size > 0


def test_timing_reports_trims() -> None:
    plan = CommandPolicy().plan(
        "-ss 2 -t 3 -stream_loop 1 -i a.mp4 -to 00:00:01.5 -frames:v 30 -shortest out.mp4",
        inputs=["a.mp4"],
        outputs=["out.mp4"],
    )
    (inp,) = plan.timing.inputs
    (out,) = plan.timing.outputs
    assert (inp.name, inp.ss, inp.t, inp.stream_loop) == ("a.mp4", 2.0, 3.0, 1)
    assert (out.name, out.to, out.frames, out.shortest) == ("out.mp4", 1.5, 30, True)
    # the user's -to is kept: the library adds no -t cap that would override it
    assert "-t" not in plan.args[plan.args.index("-to") :]
