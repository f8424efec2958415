"""Which network addresses the downloader may connect to (SSRF protection).

Pure functions, no I/O.  :func:`is_public_address` is the default policy: an
address passes only if it is globally routable public unicast, and — for IPv6
forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
Teredo) — only if the embedded IPv4 address passes too.  :func:`check_host`
looks at a URL host *before* any DNS lookup: IP literals are judged directly and
odd numeric spellings (``2130706433``, ``0x7f.1``, ``127.1``) are refused.

    >>> is_public_address(ipaddress.ip_address("93.184.215.14"))
    True
    >>> is_public_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    False
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

__all__ = [
    "AddressFilter",
    "IPAddress",
    "check_host",
    "embedded_ipv4",
    "is_public_address",
    "parse_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A policy: returns True when the downloader may connect to the address.
AddressFilter = Callable[[IPAddress], bool]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IANA IPv4 special-purpose registry (RFC 6890 and successors) plus multicast,
# reserved and broadcast: nothing in here is a public unicast destination.
_BLOCKED_V4: tuple[ipaddress.IPv4Network, ...] = (
    _V4("0.0.0.0/8"),  # "this network", includes the unspecified address
    _V4("10.0.0.0/8"),  # private
    _V4("100.64.0.0/10"),  # carrier-grade NAT
    _V4("127.0.0.0/8"),  # loopback
    _V4("169.254.0.0/16"),  # link-local (cloud metadata lives here)
    _V4("172.16.0.0/12"),  # private
    _V4("192.0.0.0/24"),  # IETF protocol assignments
    _V4("192.0.2.0/24"),  # documentation TEST-NET-1
    _V4("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    _V4("192.168.0.0/16"),  # private
    _V4("198.18.0.0/15"),  # benchmarking
    _V4("198.51.100.0/24"),  # documentation TEST-NET-2
    _V4("203.0.113.0/24"),  # documentation TEST-NET-3
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, includes 255.255.255.255 broadcast
)

# IPv6 global unicast is 2000::/3; everything outside it is refused except the
# translation prefixes handled in is_public_address.  Inside 2000::/3 these are
# not public destinations:
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_BLOCKED_V6: tuple[ipaddress.IPv6Network, ...] = (
    _V6("2001::/23"),  # IETF protocol assignments: Teredo, benchmarking 2001:2::/48, ORCHID
    _V6("2001:db8::/32"),  # documentation
    _V6("3fff::/20"),  # documentation (RFC 9637)
)
_NAT64_WKP = _V6("64:ff9b::/96")  # RFC 6052 well-known prefix: public if its IPv4 is
_NAT64_LOCAL = _V6("64:ff9b:1::/48")  # RFC 8215 local-use translation: never public
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")
_IPV4_COMPATIBLE = _V6("::/96")  # deprecated ::a.b.c.d (RFC 4291 §2.5.5.1)
_IPV4_MAPPED = _V6("::ffff:0:0/96")

# A host whose last label is a number (decimal, octal or 0x-hex) is parsed as an
# IPv4 address by browsers (WHATWG URL) and by inet_aton(); only the canonical
# dotted quad is accepted, every other numeric spelling is refused.
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (brackets and ``%zone`` allowed), else None."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(text.split("%", 1)[0])
    return ip


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv6 address, or None.

    Handles IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
    ``64:ff9b::/96`` and ``64:ff9b:1::/48`` (RFC 6052 /48 layout, skipping the
    ``u`` octet), 6to4 ``2002:AABB:CCDD::/48`` and Teredo ``2001::/32`` (the client
    address is the last 32 bits inverted).  ``::`` and ``::1`` embed nothing.
    """
    value = int(ip)
    if ip in _IPV4_MAPPED or ip in _NAT64_WKP:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(value) if value > 1 else None
    if ip in _NAT64_LOCAL:
        high = (value >> 64) & 0xFFFF  # bits 48..63
        low = (value >> 40) & 0xFFFF  # bits 72..87 (bits 64..71 are the u octet)
        return ipaddress.IPv4Address((high << 16) | low)
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    if ip in _TEREDO:
        return ipaddress.IPv4Address((value & 0xFFFFFFFF) ^ 0xFFFFFFFF)
    return None


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return not any(ip in net for net in _BLOCKED_V4) and ip.is_global


def is_public_address(ip: IPAddress) -> bool:
    """True if ``ip`` is globally routable public unicast (the default policy).

    IPv4: refuses loopback, private, link-local, CGNAT, multicast, reserved,
    broadcast, documentation, benchmarking and ``0.0.0.0/8``.  IPv6: only global
    unicast ``2000::/3`` (minus documentation, ``2001::/23`` — which covers Teredo —
    and 6to4 of a non-public IPv4), IPv4-mapped and NAT64 ``64:ff9b::/96`` of a
    public IPv4.  So ``::1``, ``fe80::/10``, ``fec0::/10``, ``fc00::/7``,
    ``ff00::/8``, ``::``, IPv4-compatible and ``64:ff9b:1::/48`` are refused.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    inner = embedded_ipv4(ip)
    if ip in _IPV4_MAPPED or ip in _NAT64_WKP:
        return inner is not None and _public_v4(inner)
    if ip not in _GLOBAL_UNICAST_V6 or any(ip in net for net in _BLOCKED_V6):
        return False
    if inner is not None and not _public_v4(inner):  # 6to4
        return False
    return not ip.is_multicast


def check_host(host: str, address_filter: AddressFilter = is_public_address) -> str | None:
    """Why the URL host ``host`` must not be fetched, or None if it may be.

    IP literals (``1.2.3.4``, ``[::1]``) are judged by ``address_filter`` here,
    since no DNS lookup happens for them.  Hosts that look like a non-canonical
    IPv4 spelling (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are
    refused outright, and so are ``localhost`` and ``*.localhost`` unless the
    filter allows 127.0.0.1.  Any other name returns None: its addresses are checked
    when it is resolved, on the addresses actually connected to.
    """
    if not host:
        return "empty host"
    ip = parse_ip(host)
    if ip is not None:
        if address_filter(ip):
            return None
        inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        via = f" (embeds {inner})" if inner is not None else ""
        return f"address {ip}{via} is not allowed"
    name = host.rstrip(".").lower()
    if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        return f"host {host!r} is a non-canonical numeric address"
    if (name == "localhost" or name.endswith(".localhost")) and not address_filter(_LOOPBACK):
        return f"host {host!r} is a loopback name"  # RFC 6761: always loopback
    return None
