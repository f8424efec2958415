"""The policy's vocabulary: allowed formats, codecs, flags and the shapes of names and values."""

# ruff: noqa: SIM905

from __future__ import annotations

import re

from ..filenames import OUTPUT_NAME, PLAIN_NAME

__all__ = [
    "DEFAULT_BSFS",
    "DEFAULT_CODECS",
    "DEFAULT_INPUT_FORMATS",
    "DEFAULT_OUTPUT_FORMATS",
]

#: Demuxers of real media.  This is also the ``-format_whitelist`` given to every
#: input, so playlists (hls, dash), concat/ffconcat lists, image2 globs via other
#: demuxers, sdp/rtp, lavfi and avisynth/vapoursynth scripts are never opened.
DEFAULT_INPUT_FORMATS = frozenset(
    """mov matroska webm avi flv mpegts mpeg mpegvideo mp3 aac wav flac ogg asf mxf
    image2 png_pipe jpeg_pipe webp_pipe bmp_pipe tiff_pipe gif apng srt ass webvtt
    y4m yuv4mpegpipe nut ac3 eac3 amr aiff caf h264 hevc m4v w64 mjpeg dv""".split()
)
DEFAULT_OUTPUT_FORMATS = frozenset(
    """mp4 mov ipod matroska webm mpegts hls dash image2 gif apng webp mp3 adts wav flac
    ogg opus oga null srt webvtt ass avi flv nut mpeg yuv4mpegpipe ac3 mjpeg segment""".split()
)
DEFAULT_CODECS = frozenset(
    """copy libx264 libx264rgb libx265 libvpx libvpx-vp9 libaom-av1 libsvtav1 libdav1d
    aac libfdk_aac libmp3lame libopus opus libvorbis vorbis flac alac pcm_s16le pcm_s24le
    pcm_f32le pcm_u8 mjpeg png gif apng libwebp libwebp_anim mpeg4 mpeg2video mpeg1video
    h264 hevc vp8 vp9 av1 mp3 prores prores_ks dnxhd ac3 eac3 srt subrip mov_text webvtt
    ass ssa rawvideo wrapped_avframe""".split()
)
DEFAULT_BSFS = frozenset(
    """h264_mp4toannexb hevc_mp4toannexb aac_adtstoasc extract_extradata remove_extra
    vp9_superframe null h264_metadata hevc_metadata dump_extra""".split()
)
LOGLEVELS = frozenset(
    "quiet panic fatal error warning info verbose debug trace -8 0 8 16 24 32 40 48 56".split()
)
NAMED_SIZES = {
    "sqcif": (128, 96),
    "qcif": (176, 144),
    "cif": (352, 288),
    "4cif": (704, 576),
    "qvga": (320, 240),
    "vga": (640, 480),
    "svga": (800, 600),
    "xga": (1024, 768),
    "hd480": (852, 480),
    "hd720": (1280, 720),
    "hd1080": (1920, 1080),
    "2k": (2048, 1080),
    "uhd2160": (3840, 2160),
    "4k": (4096, 2160),
    "ntsc": (720, 480),
    "pal": (720, 576),
}
NAMED_RATES = {
    "ntsc": 30000 / 1001,
    "pal": 25.0,
    "film": 24.0,
    "ntsc-film": 24000 / 1001,
    "qntsc": 30000 / 1001,
    "qpal": 25.0,
    "sntsc": 30000 / 1001,
    "spal": 25.0,
}
MOVFLAGS = frozenset(
    """faststart frag_keyframe empty_moov separate_moof default_base_moof dash
    omit_tfhd_offset disable_chpl cmaf frag_discont delay_moov global_sidx
    skip_sidx skip_trailer negative_cts_offsets isml write_colr write_gama
    use_metadata_tags frag_every_frame""".split()
)
HLSFLAGS = frozenset(
    """single_file delete_segments round_durations discont_start omit_endlist
    split_by_time append_list program_date_time independent_segments iframes_only
    periodic_rekey temp_file""".split()
)
CODECFLAGS = frozenset("global_header cgop low_delay qscale bitexact loop psnr".split())
FFLAGS_IN = frozenset("genpts igndts discardcorrupt fastseek nofillin noparse sortdts".split())
FFLAGS_OUT = frozenset("bitexact flush_packets shortest autobsf".split())
DISPOSITIONS = frozenset(
    """default dub original comment lyrics karaoke forced hearing_impaired visual_impaired
    clean_effects attached_pic captions descriptions dependent metadata""".split()
)
X264_KEYS = frozenset(
    """keyint min-keyint scenecut no-scenecut bframes b-adapt b-pyramid ref rc-lookahead
    aq-mode aq-strength deblock no-deblock me subme merange trellis psy-rd no-psy
    mbtree no-mbtree vbv-maxrate vbv-bufsize crf qp nal-hrd force-cfr open-gop
    colorprim transfer colormatrix range level profile threads weightp weightb 8x8dct
    no-8x8dct cabac no-cabac slices partitions direct bitrate ipratio pbratio
    chroma-qp-offset fast-pskip no-fast-pskip dct-decimate no-dct-decimate sliced-threads
    lookahead-threads sync-lookahead intra-refresh bluray-compat fullrange
    keyint_min qcomp cplxblur mixed-refs no-mixed-refs""".split()
)
X265_KEYS = frozenset(
    """keyint min-keyint scenecut no-scenecut bframes b-adapt ref rc-lookahead aq-mode
    aq-strength crf qp vbv-maxrate vbv-bufsize log-level pools frame-threads open-gop
    no-open-gop repeat-headers hdr-opt hdr10-opt hdr10 colorprim transfer colormatrix
    range master-display max-cll level-idc high-tier no-high-tier profile bitrate
    psy-rd psy-rdoq no-sao sao strong-intra-smoothing no-strong-intra-smoothing
    deblock ctu min-cu-size me subme merange weightp weightb limit-sao rect amp
    no-rect no-amp tu-intra-depth tu-inter-depth rd info no-info chromaloc sar
    annexb no-annexb aud no-aud hrd""".split()
)
KV_KEYS = frozenset(
    """preset tune crf qp keyint lp tile-columns tile-rows enable-overlays scd
    film-grain fast-decode rc tbr mbr aq-mode enable-tpl-la lookahead irefresh-type
    cpu-used row-mt threads lag-in-frames enable-cdef tiles""".split()
)
NAME_RE = PLAIN_NAME
OUT_NAME_RE = OUTPUT_NAME
#: Output templates for muxer options: one printf number and DASH ``$...$`` identifiers.
TEMPLATE_RE = re.compile(
    r"(?:[A-Za-z0-9._-]|%0?[1-9]?d|\$(?:RepresentationID|Number(?:%0?[1-9]?d)?|Bandwidth"
    r"|Time(?:%0?[1-9]?d)?|ext)\$)+"
)
PRINTF_RE = re.compile(r"%0?[1-9]?d")
DURATION_RE = re.compile(
    r"(-)?(?:(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)|(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?)"
)
SPEC_RE = re.compile(r"[A-Za-z0-9_.#:-]+")
MAP_RE = re.compile(r"-?(\d+)(?::[A-Za-z0-9_.#:-]*)?\??|\[[A-Za-z0-9_.:-]+\]")
EXPR_TOKEN_RE = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|([-+*/(),]))")
EXPR_NAMES = frozenset(
    """iw ih in_w in_h ow oh out_w out_h a sar dar hsub vsub ohsub ovsub x y n t pos
    min max trunc round floor ceil if gt lt gte lte eq abs main_w main_h overlay_w
    overlay_h W H w h text_w text_h tw th line_h lh""".split()
)
DRAWTEXT_FUNCS = frozenset("pts n frame_num e expr eif ef gmtime localtime metadata hms".split())

SOURCES = frozenset("color testsrc testsrc2 smptebars nullsrc sine anullsrc aevalsrc".split())
FILE_OPTIONS = frozenset(
    """filter_script filter_complex_script attach dump_attachment report progress
    vstats vstats_file sdp_file passlogfile listen protocol_whitelist protocol_blacklist
    format_whitelist codec_whitelist max_alloc i init_hw_device filter_hw_device
    hls_key_info_file key_info_file method headers cookies user_agent http_proxy
    segment_list var_stream_map master_pl_name fontsdir safe allowed_extensions
    dump_separator stats_enc_pre stats_enc_post stats_mux_pre segment_list_entry_prefix
    segment_format_options hls_segment_options format_options""".split()
)


def is_file_option(name: str) -> bool:
    """Unknown options that may name a file or a URL (refused even in trusted mode)."""
    return name in FILE_OPTIONS or name.endswith(
        ("_file", "_url", "file", "script", "dir", "_name", "filename", "_path", "_prefix")
    )


def looks_like_path(value: str) -> bool:
    return bool(re.search(r"[/\\]|^[A-Za-z0-9+.-]*:|^~|\.\.|^-$|^[a-z]+,", value))


def to_glob(template: str) -> str:
    return re.sub(r"\*+", "*", PRINTF_RE.sub("*", re.sub(r"\$[^$]*\$", "*", template)))
