"""Run every benchmark and write ``docs/performance.md`` with its chart.

    python -m benchmarks.run [--quick] [--only W1,W3] [--out docs/performance.md]

Each measurement is a fresh ``python -m benchmarks.variants`` process (so its peak RSS
is its own); the HTTP file server and moto's S3 server run as separate processes.
Raw figures go to ``benchmarks/.work/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from . import report, services
from .workloads import MEDIA, WORK, Sizes, Workload, make_media, workloads

ROOT = Path(__file__).resolve().parent.parent

# (variant id, label, options); "a" must come first, "b" second (the ratios' bases).
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("a", "ffmpeg alone (floor)", {}),
    ("b", "shell: curl -> ffmpeg -> aws s3 cp", {}),
    ("c", "replica of the original service", {}),
    ("d", "ffmpeg_tasks", {}),
]
# Extra ffmpeg_tasks configurations, only where they answer a question.
EXTRA: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "W1": [("d-nosandbox", "ffmpeg_tasks, sandbox='off'", {"sandbox": "off"})],
    "W3": [
        ("a-io", "bare asyncio loop + the same I/O (aiohttp, aiobotocore)", {}),
        ("d-nosandbox", "ffmpeg_tasks, sandbox='off'", {"sandbox": "off"}),
    ],
}


# Linux carries a process's peak RSS across exec (from the forking parent's memory), so
# each measured child is forked by a small /bin/sh rather than by this Python process.
FRESH = ["/bin/sh", "-c", '"$0" "$@"; exit $?']


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (every process, servers included).

    ffmpeg run inside bubblewrap is not a waited-for child of the host, so
    ``RUSAGE_CHILDREN`` misses it; this counter does not.
    """
    ticks = _cpu_ticks()
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def machine_steal() -> float:
    """CPU seconds the hypervisor gave to other guests so far (counted in ``machine_cpu``):
    a round with steal ran on a slower machine."""
    return _cpu_ticks()[7] / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> list[int]:
    """The machine's ``cpu`` line of /proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal, …"""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def find_aws() -> str:
    """The AWS CLI's real script (a pyenv shim would add a bash + pyenv hop per call)."""
    found = shutil.which("aws")
    if found is None:
        raise SystemExit("the AWS CLI is needed for the shell baseline: pip install awscli")
    if "/shims/" in found and shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return found


def run_variant(
    svc: services.Services, wl: Workload, variant: str, options: dict[str, Any], aws: str
) -> dict[str, Any]:
    run_id = f"{wl.name}-{variant}-{uuid.uuid4().hex[:8]}"
    scratch = WORK / "scratch" / run_id
    cfg = {
        **wl.as_dict(),
        "variant": variant,
        "options": options,
        "run_id": run_id,
        "scratch": str(scratch),
        "media_dir": str(MEDIA),
        "http_base": svc.http_base,
        "s3_endpoint": svc.s3_endpoint,
        "bucket": svc.bucket,
        "ffmpeg": shutil.which("ffmpeg") or "ffmpeg",
        "aws": aws,
    }
    env = {**os.environ, **services.S3_ENV}
    busy0, servers0 = machine_cpu(), svc.cpu_seconds()
    out = subprocess.run(
        [*FRESH, sys.executable, "-m", "benchmarks.variants", json.dumps(cfg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    busy = machine_cpu() - busy0
    servers = {k: v - servers0[k] for k, v in svc.cpu_seconds().items()}
    shutil.rmtree(scratch, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"{wl.name}/{variant} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["machine_cpu"] = busy
    result.update(servers)
    # ffmpeg (also inside bubblewrap, which no rusage sees), curl, aws, helpers, noise
    result["other_cpu"] = busy - result["host_process_cpu"] - sum(servers.values())
    if variant != "a":  # "a-io" stores its outputs too
        result["stored_bytes"] = svc.check_and_clear(run_id, len(wl.jobs))
    result["moto_rss_mib"] = svc.moto_rss_mib()
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"runs": len(runs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (~2 min)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement")
    parser.add_argument("--no-latency", action="store_true", help="skip the event-loop probe")
    parser.add_argument("--out", default="docs/performance.md", help="markdown file to write")
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeats is not None:
        sizes = attrs.evolve(sizes, repeats=args.repeats)
    all_workloads = workloads(sizes)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(all_workloads)
    if "W2" in names and "W2s" not in names:
        names.insert(names.index("W2") + 1, "W2s")
    unknown = [n for n in names if n not in all_workloads]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {list(all_workloads)}")

    started = time.time()
    print(f"making media in {MEDIA} …", flush=True)
    make_media(sizes)
    aws = find_aws()
    results: dict[str, Any] = {
        "sizes": attrs.asdict(sizes),
        "workloads": {},
        "latency": None,
        "host_cost": None,
    }
    with services.running(MEDIA, WORK / "logs") as svc:
        for name in names:
            wl = all_workloads[name]
            variants = VARIANTS + EXTRA.get(name, [])
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v, _, _ in variants}

            def repeats_of(variant: str, wl_name: str = name) -> int:
                slow = wl_name == "W3" and variant in ("b", "c")
                return max(sizes.repeats_slow if slow and not args.quick else sizes.repeats, 1)

            # Round-robin (a b c d a b c d …), so a drift of the machine's speed during
            # the workload touches every variant alike.
            for round_ in range(max(repeats_of(v) for v, _, _ in variants)):
                for variant, _, options in variants:
                    if round_ < repeats_of(variant):
                        runs[variant].append(run_variant(svc, wl, variant, options, aws))
                        print(f"{name} {variant:12} {json.dumps(runs[variant][-1])}", flush=True)
            rows: dict[str, Any] = {}
            for variant, label, options in variants:
                rows[variant] = {"label": label, "options": options, **median_of(runs[variant])}
                rows[variant]["all"] = runs[variant]
            results["workloads"][name] = {
                "title": wl.title,
                "job_count": len(wl.jobs),
                "rows": rows,
            }
        if "W3" in names:
            from . import host_cost

            results["host_cost"] = host_cost.run(svc, 20 if args.quick else 200)
            print("host cost", json.dumps(results["host_cost"]), flush=True)
        if not args.no_latency:
            from . import latency

            results["latency"] = latency.run(svc, sizes, aws)
            print("latency", json.dumps(results["latency"]), flush=True)
    results["elapsed"] = time.time() - started
    results["env"] = report.environment()
    results["command"] = "python -m benchmarks.run " + " ".join(argv or sys.argv[1:])
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    out = ROOT / args.out
    report.write(results, out)
    print(f"wrote {out} in {results['elapsed']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
