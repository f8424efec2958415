"""S3 → local file: ``S3Downloader`` against ``aws s3 cp``, same object, same server, one run.

    python -m benchmarks.s3_inputs --sizes 256 1024 --rounds 3

Starts moto's S3 server in its own process (``benchmarks.services``), uploads one object
per size, then alternates the two downloaders ``--rounds`` times per size.  Each side runs
in a fresh process; the S3Downloader side reports its own peak RSS (``ru_maxrss``), so
"flat in object size" is read off the two sizes.  ``aws`` comes from a private virtualenv
under ``benchmarks/.work/awscli`` (created on first use; never a project dependency).
Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.services import S3_ENV, running

WORK = Path(__file__).resolve().parent / ".work"
MiB = 1024 * 1024


def awscli() -> Path:
    venv = WORK / "awscli"
    aws = venv / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=True)
    return aws


def child(cfg: dict[str, Any]) -> None:
    """Run in a fresh process: one S3Downloader fetch; print seconds and peak RSS."""
    from ffmpeg_tasks import S3Downloader

    async def go() -> float:
        async with S3Downloader(
            [cfg["bucket"]], endpoint_url=cfg["endpoint"], region="us-east-1"
        ) as dl:
            await dl.warm_up()  # the client's one-time setup is not the download
            start = time.perf_counter()
            size = await dl.fetch(cfg["url"], Path(cfg["dest"]))
            elapsed = time.perf_counter() - start
        assert size == cfg["size"], size
        return elapsed

    seconds = asyncio.run(go())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mib": rss}))


def ours(cfg: dict[str, Any]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.s3_inputs", "--child", json.dumps(cfg)],
        env={**os.environ, **S3_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def theirs(aws: Path, cfg: dict[str, Any]) -> dict[str, float]:
    start = time.perf_counter()
    subprocess.run(
        [str(aws), "s3", "cp", cfg["url"], cfg["dest"], "--endpoint-url", cfg["endpoint"],
         "--only-show-errors"],
        env={**os.environ, **S3_ENV},
        check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert os.path.getsize(cfg["dest"]) == cfg["size"]
    return {"seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    aws = awscli()
    WORK.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="s3-inputs-", dir=WORK))
    (scratch / "media").mkdir()  # the file server of benchmarks.services serves nothing here
    rows = []
    try:
        with running(scratch / "media", scratch / "logs") as services:
            client = services.s3_client()
            client.create_bucket(Bucket=services.bucket)
            for mib in args.sizes:
                source = scratch / f"object-{mib}"
                with source.open("wb") as f:
                    for _ in range(mib):
                        f.write(os.urandom(MiB))
                key = f"in/object-{mib}.bin"
                client.upload_file(str(source), services.bucket, key)
                source.unlink()
                cfg = {
                    "bucket": services.bucket,
                    "endpoint": services.s3_endpoint,
                    "url": f"s3://{services.bucket}/{key}",
                    "dest": str(scratch / "dest.bin"),
                    "size": mib * MiB,
                }
                mine: list[dict[str, float]] = []
                cli: list[dict[str, float]] = []
                for _ in range(args.rounds):  # alternate, so drift hits both sides
                    mine.append(ours(cfg))
                    os.unlink(cfg["dest"])
                    cli.append(theirs(aws, cfg))
                    os.unlink(cfg["dest"])
                t_ours = statistics.median(r["seconds"] for r in mine)
                t_cli = statistics.median(r["seconds"] for r in cli)
                rows.append(
                    {
                        "MiB": mib,
                        "S3Downloader s": round(t_ours, 2),
                        "aws s3 cp s": round(t_cli, 2),
                        "S3Downloader MB/s": round(mib * MiB / t_ours / 1e6, 1),
                        "aws s3 cp MB/s": round(mib * MiB / t_cli / 1e6, 1),
                        "throughput ratio": round(t_cli / t_ours, 2),
                        "S3Downloader peak RSS MiB": round(max(r["peak_rss_mib"] for r in mine)),
                    }
                )
                client.delete_object(Bucket=services.bucket, Key=key)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(rows, indent=2))
    heads = list(rows[0])
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in heads) + " |")


if __name__ == "__main__":
    main()
