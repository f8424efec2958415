"""Probe an S3 endpoint on loopback for the differences S3Storage works around.

    python benchmarks/s3compat/probe.py http://127.0.0.1:8333 KEY SECRET [--name NAME]

Prints one JSON line: is a wrong CRC32 refused (PutObject and UploadPart), is
Content-Type kept, does a multipart ``S3Storage.put`` with the default CRC32 succeed
(and did it need a fallback), and what AbortMultipartUpload answers after completion.
Only 127.0.0.1 / localhost endpoints are accepted; README.md says how to start servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ffmpeg_tasks.storage.s3 import MiB, S3Storage

WRONG_CRC32 = "AAAAAA=="


def _code(exc: ClientError) -> str:
    return str(
        exc.response.get("Error", {}).get("Code")
        or exc.response["ResponseMetadata"].get("HTTPStatusCode")
    )


def probe(endpoint: str, key: str, secret: str) -> dict[str, Any]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
        ),
    )
    bucket = f"probe-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    out: dict[str, Any] = {}
    try:
        client.put_object(Bucket=bucket, Key="bad", Body=b"hello", ChecksumCRC32=WRONG_CRC32)
        out["wrong_crc32_put"] = "accepted"
    except ClientError as exc:
        out["wrong_crc32_put"] = f"refused ({_code(exc)})"
    up = client.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")
    try:
        client.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=up["UploadId"],
            PartNumber=1,
            Body=b"x" * 100,
            ChecksumCRC32=WRONG_CRC32,
        )
        out["wrong_crc32_part"] = "accepted"
    except ClientError as exc:
        out["wrong_crc32_part"] = f"refused ({_code(exc)})"
    client.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"])
    client.put_object(Bucket=bucket, Key="ct", Body=b"x", ContentType="video/mp4")
    out["content_type_kept"] = (
        client.head_object(Bucket=bucket, Key="ct")["ContentType"] == "video/mp4"
    )
    # Abort after a completed upload.
    up = client.create_multipart_upload(Bucket=bucket, Key="done")
    etag = client.upload_part(
        Bucket=bucket, Key="done", UploadId=up["UploadId"], PartNumber=1, Body=b"y"
    )["ETag"]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="done",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
    )
    try:
        resp = client.abort_multipart_upload(Bucket=bucket, Key="done", UploadId=up["UploadId"])
        out["abort_after_complete"] = str(resp["ResponseMetadata"]["HTTPStatusCode"])
    except ClientError as exc:
        out["abort_after_complete"] = _code(exc)
    out.update(asyncio.run(_storage_put(endpoint, key, secret, bucket)))
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
    return out


async def _storage_put(endpoint: str, key: str, secret: str, bucket: str) -> dict[str, Any]:
    seen: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("ffmpeg_tasks.storage.s3")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.bin"
        data = os.urandom(11 * MiB)
        path.write_bytes(data)
        async with S3Storage(
            bucket,
            endpoint_url=endpoint,
            access_key_id=key,
            secret_access_key=secret,
            multipart_threshold=5 * MiB,
            part_size=5 * MiB,
        ) as storage:
            try:
                await storage.put(path, "storage/big.bin", content_type="video/mp4")
                result = "ok"
            except Exception as exc:
                result = f"failed: {exc}"
            retried = any("without part checksums" in m for m in seen)
            return {
                "multipart_put_crc32": result,
                "complete_retried_without_checksums": retried,
                "checksum_headers_refused": storage.checksums_rejected,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("key")
    parser.add_argument("secret")
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    if urlsplit(args.endpoint).hostname not in ("127.0.0.1", "localhost"):
        sys.exit("probe.py only talks to loopback endpoints")
    print(
        json.dumps(
            {"server": args.name or args.endpoint, **probe(args.endpoint, args.key, args.secret)}
        )
    )


if __name__ == "__main__":
    main()
