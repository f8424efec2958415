"""Turn ``results.json`` into ``docs/performance.md`` and ``docs/performance.png``.

Everything above the ``KEEP`` marker is regenerated; text below it (the hand-written
analysis) is kept from the existing file.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

KEEP = "<!-- Hand-written analysis below: kept when benchmarks.run rewrites this file. -->"


def environment() -> dict[str, str]:
    def first_line(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError:
            return "missing"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""
        )

    import aiobotocore
    import aiohttp
    import moto

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB RAM",
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "ffmpeg": first_line("ffmpeg", "-version"),
        "curl": first_line("curl", "--version"),
        "aws": first_line("aws", "--version"),
        "libs": f"aiohttp {aiohttp.__version__}, aiobotocore {aiobotocore.__version__}, "
        f"moto {moto.__version__}",
    }


def _ratio(value: float, base: float | None) -> str:
    if not base:
        return "-"
    return f"{value / base:.2f}x"


def _workload_table(name: str, wl: dict[str, Any]) -> list[str]:
    rows = wl["rows"]
    a, b = rows.get("a"), rows.get("b")
    lines = [
        f"### {name}: {wl['title']}",
        "",
        "| variant | wall s | x(a) | x(b) | machine CPU s | x(a) | x(b) | host CPU s "
        "| children CPU s | host peak RSS MiB | x(a) | x(b) | largest child RSS MiB | runs |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for variant, r in rows.items():

        def rat(key: str, r: dict[str, Any] = r) -> tuple[str, str]:
            return _ratio(r[key], a and a[key]), _ratio(r[key], b and b[key])

        wa, wb = rat("wall")
        ca, cb = rat("machine_cpu")
        ra, rb = rat("rss_mib")
        lines.append(
            f"| ({variant}) {r['label']} | {r['wall']:.2f} | {wa} | {wb} | {r['machine_cpu']:.2f} "
            f"| {ca} | {cb} | {r['host_cpu']:.2f} | {r['child_cpu']:.2f} | {r['rss_mib']:.0f} "
            f"| {ra} | {rb} "
            f"| {r['child_rss_mib']:.0f} | {r['runs']} |"
        )
    lines += ["", *_cpu_table(rows), *_outside_ffmpeg(rows, wl.get("job_count", 0))]
    return [*lines, ""]


def _cpu_table(rows: dict[str, Any]) -> list[str]:
    """Where the machine's CPU went, by process (medians)."""
    if not all("other_cpu" in r for r in rows.values()):
        return []
    lines = [
        "CPU seconds by process: the measuring host process (its whole life, imports "
        "included), the HTTP file server, the S3 server (moto), and the rest (ffmpeg, "
        "also inside bubblewrap; curl, aws, helper programs; background noise).",
        "",
        "| variant | host | file server | S3 server | rest | machine |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for variant, r in rows.items():
        lines.append(
            f"| ({variant}) | {r['host_process_cpu']:.2f} | {r['file_server_cpu']:.2f} "
            f"| {r['s3_server_cpu']:.2f} | {r['other_cpu']:.2f} | {r['machine_cpu']:.2f} |"
        )
    return [*lines, ""]


def _outside_ffmpeg(rows: dict[str, Any], jobs: int) -> list[str]:
    """For one-job workloads: the (d) rows' time outside their own ffmpeg run."""
    if jobs != 1:
        return []
    lines = []
    for variant, r in rows.items():
        if "ffmpeg_runs_s" in r:
            outside = r["wall"] - r["ffmpeg_runs_s"]
            lines.append(
                f"- ({variant}): ffmpeg ran {r['ffmpeg_runs_s']:.2f} s of the {r['wall']:.2f} s; "
                f"{outside:.2f} s outside it (wall ÷ own ffmpeg run: "
                f"{r['wall'] / r['ffmpeg_runs_s']:.3f}x)"
            )
    return [*lines, ""] if lines else []


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """``(target, measured, met)`` for each target the run covered."""
    out: list[tuple[str, str, bool | None]] = []
    w = results["workloads"]
    if "W1" in w:
        r = w["W1"]["rows"]
        x = r["d"]["wall"] / r["a"]["wall"]
        out.append(("W1 wall: ffmpeg_tasks ≤ 1.05x ffmpeg alone", f"{x:.3f}x", x <= 1.05))
        if "ffmpeg_runs_s" in r["d"]:
            y = statistics.median(run["wall"] / run["ffmpeg_runs_s"] for run in r["d"]["all"])
            out.append(
                (
                    "W1, free of drift between runs: (d)'s wall ÷ its own ffmpeg run ≤ 1.05x",
                    f"{y:.3f}x",
                    y <= 1.05,
                )
            )
    if "W2" in w:
        r = w["W2"]["rows"]
        x = r["d"]["wall"] / r["b"]["wall"]
        out.append(("W2 wall: ffmpeg_tasks ≤ 0.75x shell pipeline", f"{x:.2f}x", x <= 0.75))
    if "W2" in w and "W2s" in w:
        big, small = w["W2"]["rows"]["d"]["rss_mib"], w["W2s"]["rows"]["d"]["rss_mib"]
        out.append(
            (
                "host peak RSS flat in input size: W2 minus W2s < +20 MB",
                f"{small:.0f} → {big:.0f} MiB ({big - small:+.1f})",
                (big - small) * 1.048576 < 20,
            )
        )
    if "W3" in w:
        r = w["W3"]["rows"]
        x = r["a"]["wall"] / r["d"]["wall"]
        out.append(("W3 throughput: ≥ 0.95x bare asyncio loop (a)", f"{x:.2f}x", x >= 0.95))
        if "a-io" in r:
            z = r["a-io"]["wall"] / r["d"]["wall"]
            out.append(
                ("W3 throughput: vs a bare loop doing the same I/O (a-io)", f"{z:.2f}x", None)
            )
            # At 0.95x of (a), every core busy all the time gives this much CPU; ffmpeg
            # (what "rest" was in (a)) and the two servers (as in (a-io)) come first.
            cores = os.cpu_count() or 1
            io = r["a-io"]
            left = (
                cores * r["a"]["wall"] / 0.95
                - r["a"]["other_cpu"]
                - io["file_server_cpu"]
                - io["s3_server_cpu"]
            )
            out.append(
                (
                    "W3 CPU budget at 0.95x of (a): CPU left for the host process once ffmpeg "
                    "and the two servers have theirs, with every core busy all the time",
                    f"{left:.2f} s; (a-io)'s host alone used {io['host_process_cpu']:.2f} s",
                    None,
                )
            )
    lat = results.get("latency")
    if lat:
        p99 = lat["status"]["p99_ms"]
        out.append(
            (
                "status() p99 < 5 ms during 2 transcodes + big upload",
                f"{p99:.2f} ms (loop lag p99 {lat['loop_lag']['p99_ms']:.2f} ms)",
                p99 < 5,
            )
        )
    return out


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    variants = ["a", "b", "c", "d"]
    colors = {"a": "#888888", "b": "#d98c2b", "c": "#c0392b", "d": "#2e86c1"}
    labels = {
        "a": "(a) ffmpeg alone",
        "b": "(b) shell",
        "c": "(c) replica",
        "d": "(d) ffmpeg_tasks",
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.2
    for i, v in enumerate(variants):
        walls, rss = [], []
        for n in names:
            rows = results["workloads"][n]["rows"]
            walls.append(rows[v]["wall"] / rows["a"]["wall"] if v in rows else 0)
            rss.append(rows[v]["rss_mib"] if v in rows else 0)
        xs = [k + (i - 1.5) * width for k in range(len(names))]
        ax1.bar(xs, walls, width, color=colors[v], label=labels[v])
        ax2.bar(xs, rss, width, color=colors[v], label=labels[v])
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(names)), names)
        ax.grid(axis="y", alpha=0.3)
    ax1.axhline(1.0, color="black", lw=0.8)
    ax1.set_yscale("log")
    ax1.set_ylabel("wall time ÷ ffmpeg alone (log)")
    ax1.set_title("Wall time relative to (a)")
    ax2.set_yscale("log")
    ax2.set_ylabel("MiB (log)")
    ax2.set_title("Host process peak RSS")
    ax1.legend(fontsize=8)
    fig.suptitle(f"ffmpeg_tasks benchmarks — {results['env']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _host_cost_table(rows: list[dict[str, Any]] | None) -> list[str]:
    if not rows:
        return []
    lines = [
        "### Host CPU per operation",
        "",
        "What each W3 task does, measured apart in one fresh process: its own user+system "
        "time (`RUSAGE_SELF`, so ffmpeg itself is not in it) per operation, averaged over "
        "many after a warm-up (`benchmarks/host_cost.py`). Each row sets the least code "
        "that does the operation beside the ffmpeg_tasks backend that does it in W3; on a "
        "shared VM the ratio is steadier than either figure.",
        "",
        "| operation | least code | ms | ffmpeg_tasks | ms | ratio |",
        "|---|---|--:|---|--:|--:|",
    ]
    for r in rows:
        if "ours_ms" in r:
            lines.append(
                f"| {r['what']} | {r['least']} | {r['least_ms']:.2f} | {r['ours']} | "
                f"{r['ours_ms']:.2f} | {r['ours_ms'] / r['least_ms']:.2f}x |"
            )
        else:
            lines.append(f"| {r['what']} | {r['least']} | {r['least_ms']:.2f} | | | |")
    return [*lines, ""]


def write(results: dict[str, Any], out: Path) -> None:
    env = results["env"]
    png = out.with_suffix(".png")
    chart(results, png)
    lines = [
        "# Performance",
        "",
        "Generated by `benchmarks/run.py`; reproduce with:",
        "",
        "```sh",
        "pip install -e '.[test]' -r benchmarks/requirements.txt",
        results["command"],
        "```",
        "",
        f"- date: {env['date']}; run took {results['elapsed'] / 60:.1f} min",
        f"- machine: {env['machine']}; {env['os']}; Python {env['python']}",
        f"- {env['ffmpeg']}",
        f"- {env['curl']}",
        f"- {env['aws']}",
        f"- {env['libs']}",
        f"- sizes: `{json.dumps(results['sizes'])}`",
        "",
        "Figures are medians over `runs`. *wall* is the host's time from start of work to "
        "the last output stored. *host CPU* is the measuring process's own user+system time; "
        "*children CPU* adds its waited-for children (ffmpeg, curl, aws) - ffmpeg inside "
        "bubblewrap is not one of them, so for sandboxed ffmpeg_tasks rows it is near zero; "
        "*machine CPU* is the whole machine's busy time during the run (/proc/stat: ffmpeg, "
        "the host, the HTTP server and moto, plus any background noise) and is the fair "
        "total. *host peak RSS* is `ru_maxrss` of the measuring process, started fresh for "
        "every run (interpreter and imports included; ffmpeg's memory is in *largest child* "
        "where visible).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for target, measured, met in targets(results):
        shown = "(measure)" if met is None else "yes" if met else "**no**"
        lines.append(f"| {target} | {measured} | {shown} |")
    lines += ["", f"![chart]({png.name})", "", "## Results", ""]
    for name, wl in results["workloads"].items():
        lines += _workload_table(name, wl)
    lines += _host_cost_table(results.get("host_cost"))
    lat = results.get("latency")
    if lat:
        lines += [
            "### Event loop under load",
            "",
            "Two W1 transcodes through `TaskManager` plus a "
            f"{lat['uploaded_bytes'] / 2**20:.0f} MiB `S3Storage.put`, with a probe calling "
            f"`tm.status()` every 10 ms ({lat['samples']} samples; upload took "
            f"{lat['upload_s']:.1f} s, everything {lat['all_s']:.1f} s).",
            "",
            "| measure | p50 ms | p99 ms | max ms |",
            "|---|--:|--:|--:|",
        ]
        for key, title in (
            ("status", "`tm.status()` call, from wake-up to result"),
            ("loop_lag", "loop lag (10 ms sleep overshoot) in that process"),
            ("baseline_lag", "loop lag of a bare asyncio process beside 2 plain ffmpeg runs"),
            (
                "baseline_upload_lag",
                "loop lag of a bare asyncio process beside 2 plain ffmpeg runs and "
                "`aws s3 cp` of the same file to moto",
            ),
        ):
            if key not in lat:
                continue
            s = lat[key]
            lines.append(f"| {title} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} |")
        lines.append("")
    kept = ""
    if out.exists():
        old = out.read_text()
        if KEEP in old:
            kept = old.split(KEEP, 1)[1].lstrip("\n")
    out.write_text("\n".join(lines) + "\n" + KEEP + "\n\n" + kept)
