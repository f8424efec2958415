"""Option names of the allowed filters, as listed by ``ffmpeg -h filter=NAME`` (ffmpeg 5.1).

Each entry is ``(options in declaration order, "alias=option ...")``.  The order matters:
ffmpeg maps positional filter arguments (``scale=640:360``) to options in this order.
"""

# ruff: noqa: E501

from __future__ import annotations

FILTER_OPTIONS: dict[str, tuple[str, str]] = {
    "scale": (
        "w h flags interl in_color_matrix out_color_matrix in_range out_range in_v_chr_pos in_h_chr_pos out_v_chr_pos out_h_chr_pos force_original_aspect_ratio force_divisible_by param0 param1 eval",
        "width=w height=h",
    ),
    "crop": ("out_w out_h x y keep_aspect exact", "w=out_w h=out_h"),
    "pad": ("width height x y color eval aspect", "w=width h=height"),
    "fps": ("fps start_time round eof_action", ""),
    "format": ("pix_fmts", ""),
    "setsar": ("sar max", "ratio=sar r=sar"),
    "setdar": ("dar max", "ratio=dar r=dar"),
    "transpose": ("dir passthrough", ""),
    "hflip": ("", ""),
    "vflip": ("", ""),
    "rotate": ("angle out_w out_h fillcolor bilinear", "a=angle ow=out_w oh=out_h c=fillcolor"),
    "overlay": ("x y eof_action eval shortest format repeatlast alpha", ""),
    "drawtext": (
        "fontfile text textfile fontcolor fontcolor_expr boxcolor bordercolor shadowcolor box boxborderw line_spacing fontsize x y shadowx shadowy borderw tabsize basetime font expansion timecode tc24hmax timecode_rate reload alpha fix_bounds start_number text_source text_shaping ft_load_flags",
        "r=timecode_rate rate=timecode_rate",
    ),
    "subtitles": (
        "filename original_size fontsdir alpha charenc stream_index force_style",
        "f=filename si=stream_index",
    ),
    "ass": ("filename original_size fontsdir alpha shaping", "f=filename"),
    "trim": (
        "start end start_pts end_pts duration start_frame end_frame",
        "starti=start endi=end durationi=duration",
    ),
    "atrim": (
        "start end start_pts end_pts duration start_sample end_sample",
        "starti=start endi=end durationi=duration",
    ),
    "setpts": ("expr", ""),
    "asetpts": ("expr", ""),
    "concat": ("n v a unsafe", ""),
    "split": ("outputs", ""),
    "asplit": ("outputs", ""),
    "palettegen": ("max_colors reserve_transparent transparency_color stats_mode use_alpha", ""),
    "paletteuse": (
        "dither bayer_scale diff_mode new alpha_threshold use_alpha debug_kdtree color_search mean_err debug_accuracy",
        "",
    ),
    "thumbnail": ("n", ""),
    "select": ("expr outputs", "e=expr n=outputs"),
    "aselect": ("expr outputs", "e=expr n=outputs"),
    "yadif": ("mode parity deint", ""),
    "bwdif": ("mode parity deint", ""),
    "unsharp": (
        "luma_msize_x luma_msize_y luma_amount chroma_msize_x chroma_msize_y chroma_amount alpha_msize_x alpha_msize_y alpha_amount",
        "lx=luma_msize_x ly=luma_msize_y la=luma_amount cx=chroma_msize_x cy=chroma_msize_y ca=chroma_amount ax=alpha_msize_x ay=alpha_msize_y aa=alpha_amount",
    ),
    "boxblur": (
        "luma_radius luma_power chroma_radius chroma_power alpha_radius alpha_power",
        "lr=luma_radius lp=luma_power cr=chroma_radius cp=chroma_power ar=alpha_radius ap=alpha_power",
    ),
    "gblur": ("sigma steps planes sigmaV", ""),
    "eq": ("contrast brightness saturation gamma gamma_r gamma_g gamma_b gamma_weight eval", ""),
    "hue": ("h s H b", ""),
    "colorchannelmixer": ("rr rg rb ra gr gg gb ga br bg bb ba ar ag ab aa pc pa", ""),
    "fade": (
        "type start_frame nb_frames alpha start_time duration color",
        "t=type s=start_frame n=nb_frames st=start_time d=duration c=color",
    ),
    "afade": (
        "type start_sample nb_samples start_time duration curve",
        "t=type ss=start_sample ns=nb_samples st=start_time d=duration c=curve",
    ),
    "loudnorm": (
        "I LRA TP measured_I measured_LRA measured_TP measured_thresh offset linear dual_mono print_format",
        "i=I lra=LRA tp=TP measured_i=measured_I measured_lra=measured_LRA measured_tp=measured_TP",
    ),
    "volume": ("volume precision eval replaygain replaygain_preamp replaygain_noclip", ""),
    "aresample": ("sample_rate", ""),
    "aformat": (
        "sample_fmts sample_rates channel_layouts",
        "f=sample_fmts r=sample_rates cl=channel_layouts",
    ),
    "amix": ("inputs duration dropout_transition weights normalize", ""),
    "amerge": ("inputs", ""),
    "pan": ("args", ""),
    "atempo": ("tempo", ""),
    "null": ("", ""),
    "anull": ("", ""),
    "copy": ("", ""),
    "tile": ("layout nb_frames margin padding color overlap init_padding", ""),
    "lut3d": ("file clut interp", ""),
    "drawbox": (
        "x y width height color thickness replace box_source",
        "w=width h=height c=color t=thickness",
    ),
    "xfade": ("transition duration offset expr", ""),
    "acrossfade": (
        "nb_samples duration overlap curve1 curve2",
        "ns=nb_samples d=duration o=overlap c1=curve1 c2=curve2",
    ),
    "hstack": ("inputs shortest", ""),
    "vstack": ("inputs shortest", ""),
    "xstack": ("inputs layout grid shortest fill", ""),
    "loop": ("loop size start", ""),
    "aloop": ("loop size start", ""),
    "tpad": ("start stop start_mode stop_mode start_duration stop_duration color", ""),
    "apad": ("packet_size pad_len whole_len pad_dur whole_dur", ""),
    "showwaves": ("size mode n rate split_channels colors scale draw", "s=size r=rate"),
    "showwavespic": ("size split_channels colors scale draw filter", "s=size"),
    "showspectrumpic": (
        "size mode color scale fscale saturation win_func orientation gain legend rotation start stop drange limit opacity",
        "s=size",
    ),
    "showspectrum": (
        "size slide mode color scale fscale saturation win_func orientation overlap gain data rotation start stop fps legend drange limit opacity",
        "s=size",
    ),
    "showfreqs": (
        "size rate mode ascale fscale win_size win_func overlap averaging colors cmode minamp data channels",
        "s=size r=rate",
    ),
    "avectorscope": (
        "mode rate size rc gc bc ac rf gf bf af zoom draw scale swap mirror",
        "m=mode r=rate s=size",
    ),
    "colorkey": ("color similarity blend", ""),
    "chromakey": ("color similarity blend yuv", ""),
    "blend": (
        "c0_mode c1_mode c2_mode c3_mode all_mode c0_expr c1_expr c2_expr c3_expr all_expr c0_opacity c1_opacity c2_opacity c3_opacity all_opacity eof_action shortest repeatlast",
        "",
    ),
    "negate": ("components negate_alpha", ""),
    "deband": (
        "1thr 2thr 3thr 4thr range direction blur coupling",
        "r=range d=direction b=blur c=coupling",
    ),
    "hqdn3d": ("luma_spatial chroma_spatial luma_tmp chroma_tmp", ""),
    "vignette": ("angle x0 y0 mode eval dither aspect", "a=angle"),
    "zoompan": ("zoom x y d s fps", "z=zoom"),
    "cropdetect": ("limit round reset skip reset_count max_outliers", ""),
    "blackdetect": (
        "d picture_black_ratio_th pixel_black_th",
        "black_min_duration=d pic_th=picture_black_ratio_th pix_th=pixel_black_th",
    ),
    "silencedetect": ("n d mono", "noise=n duration=d m=mono"),
    "volumedetect": ("", ""),
    "ebur128": ("video size meter framelog metadata peak dualmono panlaw target gauge scale", ""),
    "acompressor": (
        "level_in mode threshold ratio attack release makeup knee link detection level_sc mix",
        "",
    ),
    "alimiter": ("level_in level_out limit attack release asc asc_level level latency", ""),
    "highpass": (
        "frequency width_type width poles mix channels normalize transform precision blocksize",
        "f=frequency t=width_type w=width p=poles m=mix c=channels n=normalize a=transform r=precision b=blocksize",
    ),
    "lowpass": (
        "frequency width_type width poles mix channels normalize transform precision blocksize",
        "f=frequency t=width_type w=width p=poles m=mix c=channels n=normalize a=transform r=precision b=blocksize",
    ),
    "equalizer": (
        "frequency width_type width gain mix channels normalize transform precision blocksize",
        "f=frequency t=width_type w=width g=gain m=mix c=channels n=normalize a=transform r=precision b=blocksize",
    ),
    "dynaudnorm": (
        "framelen gausssize peak maxgain targetrms coupling correctdc altboundary compress threshold channels overlap",
        "f=framelen g=gausssize p=peak m=maxgain r=targetrms n=coupling c=correctdc b=altboundary s=compress t=threshold h=channels o=overlap",
    ),
    "silenceremove": (
        "start_periods start_duration start_threshold start_silence start_mode stop_periods stop_duration stop_threshold stop_silence stop_mode detection window",
        "",
    ),
    "channelsplit": ("channel_layout channels", ""),
    "join": ("inputs channel_layout map", ""),
    "showinfo": ("checksum", ""),
    "setparams": ("field_mode range color_primaries color_trc colorspace", ""),
    "colorspace": (
        "all space range primaries trc format fast dither wpadapt iall ispace irange iprimaries itrc",
        "",
    ),
    "lutrgb": ("c0 c1 c2 c3 y u v r g b a", ""),
    "lutyuv": ("c0 c1 c2 c3 y u v r g b a", ""),
    "curves": ("preset master red green blue all psfile plot", "m=master r=red g=green b=blue"),
    "sine": (
        "frequency beep_factor sample_rate duration samples_per_frame",
        "f=frequency b=beep_factor r=sample_rate d=duration",
    ),
    "anullsrc": (
        "channel_layout sample_rate nb_samples duration",
        "cl=channel_layout r=sample_rate n=nb_samples d=duration",
    ),
    "color": ("color size rate duration sar", "c=color s=size r=rate d=duration"),
    "testsrc": ("size rate duration sar decimals", "s=size r=rate d=duration n=decimals"),
    "testsrc2": ("size rate duration sar alpha", "s=size r=rate d=duration"),
    "smptebars": ("size rate duration sar", "s=size r=rate d=duration"),
    "nullsrc": ("size rate duration sar", "s=size r=rate d=duration"),
    "framerate": ("fps interp_start interp_end scene flags", ""),
    "fieldorder": ("order", ""),
    "scale2ref": (
        "w h flags interl in_color_matrix out_color_matrix in_range out_range in_v_chr_pos in_h_chr_pos out_v_chr_pos out_h_chr_pos force_original_aspect_ratio force_divisible_by param0 param1 eval",
        "width=w height=h",
    ),
    "noformat": ("pix_fmts", ""),
    "setfield": ("mode", ""),
    "settb": ("expr", "tb=expr"),
    "asettb": ("expr", "tb=expr"),
    "drawgrid": (
        "x y width height color thickness replace",
        "w=width h=height c=color t=thickness",
    ),
    "afftdn": (
        "noise_reduction noise_floor noise_type band_noise residual_floor track_noise track_residual output_mode adaptivity floor_offset noise_link band_multiplier sample_noise gain_smooth",
        "nr=noise_reduction nf=noise_floor nt=noise_type bn=band_noise rf=residual_floor tn=track_noise tr=track_residual om=output_mode ad=adaptivity fo=floor_offset nl=noise_link bm=band_multiplier sn=sample_noise gs=gain_smooth",
    ),
    "acopy": ("", ""),
    "aevalsrc": (
        "exprs nb_samples sample_rate duration channel_layout",
        "n=nb_samples s=sample_rate d=duration c=channel_layout",
    ),
    "fifo": ("", ""),
    "afifo": ("", ""),
    "setrange": ("range", ""),
}
