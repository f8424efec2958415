"""Provider differences S3Storage works around (measured against real servers).

* Swift's s3api rejects a CompleteMultipartUpload body that lists part checksums
  (``400 MalformedXML``: its schema allows only PartNumber and ETag); others answer
  ``InvalidArgument`` / ``InvalidRequest``.  :func:`complete_rejects_checksums` spots it,
  and the Complete is sent once more without them.
* Backblaze B2 refuses ``x-amz-checksum-*`` / ``x-amz-sdk-checksum-algorithm`` headers
  (``400 InvalidArgument … Unsupported header``).  :func:`header_rejects_checksums`
  spots it; the storage then stops sending checksums for the rest of its life.
* After an abort that raced a completed upload, SeaweedFS answers 204 and Swift
  ``NoSuchKey`` (AWS: ``NoSuchUpload``), so whether the object exists is decided by a
  HeadObject, and :func:`multipart_etag` tells our object from an older one at that key.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger("ffmpeg_tasks.storage.s3")

__all__ = [
    "abort",
    "complete",
    "complete_rejects_checksums",
    "header_rejects_checksums",
    "multipart_etag",
]

_COMPLETE_CODES = frozenset({"MalformedXML", "InvalidArgument", "InvalidRequest"})
_HEADER_CODES = frozenset({"InvalidArgument", "InvalidRequest", "NotImplemented"})
_HEADER_WORDS = re.compile(r"checksum|unsupported header|x-amz-sdk", re.IGNORECASE)
_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def _code_status_message(exc: BaseException) -> tuple[str, int | None, str]:
    if not isinstance(exc, ClientError):
        return "", None, ""
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(err.get("Code", "")), status, str(err.get("Message", "") or "")


def complete_rejects_checksums(exc: BaseException) -> bool:
    """A 400 to CompleteMultipartUpload that a body without part checksums may avoid."""
    code, status, _ = _code_status_message(exc)
    return status == 400 and code in _COMPLETE_CODES


def header_rejects_checksums(exc: BaseException) -> bool:
    """A 400 (or 501) that names the checksum headers as unsupported."""
    code, status, message = _code_status_message(exc)
    if status not in (400, 501) or code not in _HEADER_CODES:
        return False
    return bool(_HEADER_WORDS.search(message)) or code == "NotImplemented"


def multipart_etag(part_etags: list[str]) -> str | None:
    """The ETag S3 gives the object completed from these parts, if they are plain MD5s."""
    digests = [e.strip('"').lower() for e in part_etags]
    if not digests or not all(_MD5_HEX.fullmatch(d) for d in digests):
        return None
    joined = b"".join(bytes.fromhex(d) for d in digests)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(digests)}"


async def complete(
    client: Any, bucket: str, full_key: str, upload_id: str, parts: list[dict[str, Any]]
) -> None:
    """CompleteMultipartUpload; once more without part checksums if those are refused."""
    try:
        await client.complete_multipart_upload(
            Bucket=bucket,
            Key=full_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except ClientError as exc:
        sent = any("ChecksumCRC32" in p for p in parts)
        if not sent or not complete_rejects_checksums(exc):
            raise
        log.info(
            "%s: Complete refused (%s); sent again without part checksums",
            f"s3://{bucket}/{full_key}",
            exc,
        )
        bare = [{"ETag": p["ETag"], "PartNumber": p["PartNumber"]} for p in parts]
        await client.complete_multipart_upload(
            Bucket=bucket,
            Key=full_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": bare},
        )


async def abort(
    client: Any, bucket: str, full_key: str, upload_id: str, completed_etags: list[str]
) -> None:
    """Abort a multipart upload; if it completed after all, delete the object.

    ``completed_etags`` (the parts' ETags, empty if Complete was never sent) marks an
    upload that may have completed.  Providers answer an abort after completion with
    ``NoSuchUpload`` (AWS), ``NoSuchKey`` (Swift) or 204 (SeaweedFS), so a HeadObject
    decides: the object is deleted unless its ETag shows it is an older one.
    """
    where = f"s3://{bucket}/{full_key}"
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=full_key, UploadId=upload_id)
    except ClientError as exc:
        code, _, _ = _code_status_message(exc)
        if code not in ("NoSuchUpload", "NoSuchKey") or not completed_etags:
            log.warning("could not abort multipart upload of %s: %s", where, exc)
    except Exception as exc:
        log.warning("could not abort multipart upload of %s: %s", where, exc)
    if not completed_etags:
        return
    try:
        head = await client.head_object(Bucket=bucket, Key=full_key)
    except ClientError as exc:
        if _code_status_message(exc)[1] != 404:
            log.warning("could not check for a completed %s: %s", where, exc)
        return
    except Exception as exc:
        log.warning("could not check for a completed %s: %s", where, exc)
        return
    ours = multipart_etag(completed_etags)
    if ours is not None and str(head.get("ETag", "")).strip('"') != ours:
        return  # an older object at this key; our upload never completed
    try:
        # CompleteMultipartUpload went through before we were interrupted.
        await client.delete_object(Bucket=bucket, Key=full_key)
    except Exception as exc:
        log.warning("could not delete %s after a cancelled upload: %s", where, exc)
