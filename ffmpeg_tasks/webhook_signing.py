"""Webhook signatures: this library's own headers and Standard Webhooks.

Two schemes, both HMAC-SHA256 over the timestamp and the raw body:

- ``"ffmpeg-tasks"`` (the default): ``X-FFmpeg-Tasks-Timestamp`` and
  ``X-FFmpeg-Tasks-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>``;
  :func:`verify_signature` checks it.
- ``"standard"`` (https://www.standardwebhooks.com): ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64 of HMAC(key,
  "<id>.<timestamp>.<body>")>`` with a ``whsec_<base64 key>`` secret, so receivers verify
  with the ``standardwebhooks`` libraries in any language, or :func:`verify_standard`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from .errors import ConfigurationError

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "STANDARD_ID_HEADER",
    "STANDARD_SIGNATURE_HEADER",
    "STANDARD_TIMESTAMP_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "sign_standard",
    "standard_key",
    "verify_signature",
    "verify_standard",
]

TIMESTAMP_HEADER = "X-FFmpeg-Tasks-Timestamp"
SIGNATURE_HEADER = "X-FFmpeg-Tasks-Signature"
DELIVERY_HEADER = "X-FFmpeg-Tasks-Delivery"
EVENT_HEADER = "X-FFmpeg-Tasks-Event"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, timestamp: int | str, body: bytes | str) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    data = body.encode() if isinstance(body, str) else body
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + data, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: int | str,
    body: bytes | str,
    signature: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

    ``timestamp`` and ``signature`` are the header values as received, ``body`` the
    raw request body (not re-serialised JSON).  A timestamp more than ``tolerance``
    seconds away from ``now`` (default: the current time) fails, so a captured
    delivery cannot be replayed later.  The comparison is constant-time.
    """
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = sign(secret, ts, body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


# -- Standard Webhooks -------------------------------------------------------------

STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"


def standard_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ConfigurationError if malformed."""
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise ConfigurationError("a Standard Webhooks secret looks like 'whsec_<base64>'")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("the Standard Webhooks secret is not valid base64") from None
    if len(key) < 16:
        raise ConfigurationError("the Standard Webhooks secret is shorter than 16 bytes")
    return key


def sign_standard(secret: str, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    data = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + data
    mac = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify_standard(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """True if ``headers`` (case-insensitive) sign ``body`` and the timestamp is fresh.

    Any of the space-separated ``v1,`` signatures may match (key rotation); the
    comparison is constant-time.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get(STANDARD_ID_HEADER)
    stamp = lower.get(STANDARD_TIMESTAMP_HEADER, "")
    given = lower.get(STANDARD_SIGNATURE_HEADER, "")
    try:
        ts = int(stamp.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if not msg_id or abs(current - ts) > tolerance:
        return False
    expected = sign_standard(secret, msg_id, ts, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in given.split()
        if candidate.startswith("v1,")
    )
