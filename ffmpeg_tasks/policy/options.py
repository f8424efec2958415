"""The ffmpeg option allow-list: every option a command may use, its arity, scope and value kind.

Names are canonical (``c``, ``filter``, ``b`` …); :data:`ALIASES` maps ffmpeg's
shorthand names (``-vcodec``, ``-vf``, ``-ab`` …) to a canonical name plus the
stream specifier they imply.
"""

# ruff: noqa: E501, SIM905

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["ALIASES", "FFMPEG_FLAGS", "MIXED_ARITY", "OptionSpec", "default_options"]

#: ffmpeg's own boolean options (``-name`` / ``-noname``, no value) in 5.1 to 9.0, found by
#: running each binary with ``-name`` last (a valued option says "Missing argument").
FFMPEG_FLAGS = frozenset(
    """accurate_seek an auto_conversion_filters benchmark bitexact copy_unknown copyinkf copyts
    debug_ts display_hflip display_vflip dn find_stream_info fix_sub_duration
    fix_sub_duration_heartbeat force_fps hide_banner ignore_unknown n psnr qphist re
    recast_media shortest sn start_at_zero stats stdin vn xerror y""".split()
)
#: Options that take a value in one ffmpeg version and none in another: ``-name`` cannot
#: be rendered so every version reads it the same way (``-noname`` can).
MIXED_ARITY = frozenset("autorotate autoscale".split())

#: Where an option may appear: before ``-i`` only, before an output only, either, or anywhere.
Scope = str  # "global" | "input" | "output" | "file"


@attrs.frozen
class OptionSpec:
    """One allowed option.

    ``kind`` names the value check (see ``CommandPolicy._check_value``), e.g.
    ``"int:0:51"``, ``"enum:a|b"``, ``"duration"``, ``"codec"``, ``"graph"``; ``flag``
    options take no value.  ``stream_spec`` allows ``-name:v:0`` forms.
    """

    name: str
    kind: str = "text"
    scope: Scope = "output"
    stream_spec: bool = False

    @property
    def takes_value(self) -> bool:
        return self.kind != "flag"


def _specs(scope: Scope, text: str, *, stream_spec: bool = False) -> list[OptionSpec]:
    out = []
    for item in text.split():
        name, _, kind = item.partition("=")
        out.append(OptionSpec(name, kind or "text", scope, stream_spec))
    return out


_PRESETS = "ultrafast|superfast|veryfast|faster|fast|medium|slow|slower|veryslow|placebo"
_BOOL = "enum:0|1|true|false"

_OPTIONS: list[OptionSpec] = [
    # global
    *_specs(
        "global",
        """y=flag nostdin=flag hide_banner=flag stats=flag nostats=flag benchmark=flag
        copyts=flag start_at_zero=flag xerror=flag debug_ts=flag ignore_unknown=flag copy_unknown=flag
        loglevel=loglevel v=loglevel filter_complex=graph filter_threads=threads
        filter_complex_threads=threads vsync=enum:auto|passthrough|cfr|vfr|drop|-1|0|1|2
        stats_period=float:0.05:3600 max_error_rate=float:0:1 abort_on=enum:empty_output|empty_output_stream
        copytb=int:-1:1 frame_drop_threshold=float:-1000:1000
        """,
    ),
    # input only
    *_specs(
        "input",
        """itsoffset=duration sseof=duration stream_loop=stream_loop re=flag
        framerate=rate pattern_type=enum:sequence start_number=int:0:1000000000
        thread_queue_size=int:1:4096 itsscale=float:0.001:1000 discard=enum:none|default|noref|bidir|nokey|all
        fflags=fflags_in analyzeduration=int:0:600000000 probesize=int:32:1000000000
        fpsprobesize=int:-1:1000 channels=int:1:64 sample_rate=int:1:768000
        video_size=size pixel_format=pix_fmt loop=int:0:1 readrate=float:0:100
        accurate_seek=flag seek_timestamp=enum:0|1""",
    ),
    # input or output
    *_specs(
        "file",
        """f=format ss=duration t=duration to=duration vn=flag an=flag sn=flag dn=flag
        threads=threads max_pixels=max_pixels""",
    ),
    *_specs(
        "file",
        """c=codec r=rate s=size pix_fmt=pix_fmt ar=int:1:768000 ac=int:1:64
        sample_fmt=sample_fmt channel_layout=channel_layout ch_layout=channel_layout
        ignore_editlist=enum:0|1 noautorotate=flag""",
        stream_spec=True,
    ),
    # output only, stream specific
    *_specs(
        "output",
        f"""filter=graph b=bitrate maxrate=bitrate minrate=bitrate bufsize=bitrate
        frames=int:1:100000000 q=float:-1:1000 crf=float:-1:63 qp=int:-1:255
        preset=enum:{_PRESETS}|p1|p2|p3|p4|p5|p6|p7|0|1|2|3|4|5|6|7|8|9|10|11|12|13
        tune=enum:film|animation|grain|stillimage|fastdecode|zerolatency|psnr|ssim|0|1|2|3|psnr-hvs
        profile=profile level=text12 g=int:1:100000 keyint_min=int:0:100000 bf=int:-1:16
        refs=int:0:16 sc_threshold=int:-1000000000:1000000000 x264-params=x264params
        x265-params=x265params svtav1-params=kvparams aom-params=kvparams
        x264opts=x264params cpu-used=int:-16:16 deadline=enum:good|best|realtime
        quality=enum:good|best|realtime row-mt=enum:0|1 tile-columns=int:0:6 tile-rows=int:0:6
        lag-in-frames=int:0:70 auto-alt-ref=int:0:6 lossless=int:0:1 speed=int:-16:16
        usage=enum:good|realtime|allintra compression_level=int:-1:12 vbr=text12
        application=enum:voip|audio|lowdelay frame_duration=float:2.5:120 cutoff=int:0:192000
        aac_coder=enum:anmr|twoloop|fast tag=tag bsf=bsf metadata=metadata
        disposition=disposition pass=int:1:3 passlogfile=plainname fps_mode=enum:auto|passthrough|cfr|vfr|drop
        strict=enum:very|strict|normal|unofficial|experimental|-2|-1|0|1|2
        flags=codecflags trellis=int:0:2 qmin=int:-1:69 qmax=int:-1:1024 aq-mode=int:-1:4
        enable-tpl=int:0:1 tiles=tiles global_quality=int:0:1000 pred=text12
        forced-idr=enum:0|1 a53cc=enum:0|1""",
        stream_spec=True,
    ),
    # output only, per file
    *_specs(
        "output",
        """map=map map_metadata=map_metadata map_chapters=int:-1:64 shortest=flag fs=filesize
        movflags=movflags frag_duration=int:0:3600000000 min_frag_duration=int:0:3600000000
        frag_size=int:0:1000000000 use_editlist=enum:-1|0|1|auto avoid_negative_ts=enum:auto|disabled|make_non_negative|make_zero|-1|0|1|2
        muxdelay=float:0:100 muxpreload=float:0:100 max_muxing_queue_size=int:1:65536
        max_interleave_delta=int:0:100000000000 write_tmcd=enum:0|1|auto brand=text12
        id3v2_version=int:0:4 write_xing=enum:0|1 write_id3v1=enum:0|1 fflags=fflags_out
        hls_time=float:0:3600 hls_init_time=float:0:3600 hls_list_size=int:0:100000
        hls_playlist_type=enum:event|vod hls_segment_filename=outname hls_segment_type=enum:mpegts|fmp4
        hls_flags=hlsflags hls_fmp4_init_filename=outname hls_start_number_source=enum:generic|epoch|epoch_us|datetime
        hls_allow_cache=int:-1:1 hls_delete_threshold=int:1:1000 hls_base_url=urltext
        seg_duration=float:0:3600 frag_type=enum:none|every_frame|duration|pframes
        use_template=enum:0|1 use_timeline=enum:0|1 adaptation_sets=adaptation_sets
        init_seg_name=outname media_seg_name=outname single_file=enum:0|1
        single_file_name=outname window_size=int:0:100000 extra_window_size=int:0:100000
        streaming=enum:0|1 ldash=enum:0|1 hls_playlist=enum:0|1 dash_segment_type=enum:auto|mp4|webm
        global_sidx=enum:0|1 mpd_profile=enum:dash|dvb_dash update=enum:0|1 frame_pts=enum:0|1
        loop=int:-1:65535 final_delay=int:-1:65535 timecode=timecode aspect=aspect
        copyinkf=flag shortest_buf_duration=float:0:100 segment_time=duration reset_timestamps=enum:0|1
        segment_format=enum:mp4|mov|matroska|webm|mpegts|mp3|adts|wav|flac|ogg|opus|nut|avi|flv
        segment_list=outname segment_list_type=enum:flat|csv|ext|m3u8
        segment_start_number=int:0:1000000000 segment_list_size=int:0:100000
        segment_time_delta=duration segment_atclocktime=enum:0|1 break_non_keyframes=enum:0|1
        segment_wrap=int:0:1000000""",
    ),
]

#: Shorthand options: name -> (canonical name, implied stream specifier).
ALIASES: dict[str, tuple[str, str]] = {
    "vcodec": ("c", "v"),
    "acodec": ("c", "a"),
    "scodec": ("c", "s"),
    "dcodec": ("c", "d"),
    "codec": ("c", ""),
    "vf": ("filter", "v"),
    "af": ("filter", "a"),
    "lavfi": ("filter_complex", ""),
    "ab": ("b", "a"),
    "vb": ("b", "v"),
    "qscale": ("q", ""),
    "aq": ("q", "a"),
    "vframes": ("frames", "v"),
    "aframes": ("frames", "a"),
    "dframes": ("frames", "d"),
    "vtag": ("tag", "v"),
    "atag": ("tag", "a"),
    "stag": ("tag", "s"),
    "absf": ("bsf", "a"),
    "vbsf": ("bsf", "v"),
    "sbsf": ("bsf", "s"),
    "preset:v": ("preset", "v"),
}


def default_options(extra: Iterable[OptionSpec] = ()) -> dict[str, OptionSpec]:
    """The strict option table keyed by canonical name (``extra`` entries override)."""
    table: dict[str, OptionSpec] = {}
    for spec in [*_OPTIONS, *extra]:
        key = spec.name if spec.name not in table or spec.scope == table[spec.name].scope else None
        if key is None:
            # Same name with input and output meaning (e.g. ``loop``): keep both as "file".
            old = table[spec.name]
            table[spec.name] = OptionSpec(spec.name, old.kind, "file", old.stream_spec)
            table[spec.name + "@" + spec.scope] = spec
            table[old.name + "@" + old.scope] = old
        else:
            table[key] = spec
    return table
