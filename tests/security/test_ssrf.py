"""SSRF: the address policy tables, and HttpDownloader refusing private targets for real."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from ffmpeg_tasks.downloader import HttpDownloader
from ffmpeg_tasks.downloader.addresses import (
    IPAddress,
    check_host,
    embedded_ipv4,
    is_public_address,
    parse_ip,
)
from ffmpeg_tasks.downloader.http import AddressFilteringResolver
from ffmpeg_tasks.errors import BlockedAddressError, DownloadError
from tests.servers import MediaServer

ip = ipaddress.ip_address

# --- pure policy tables --------------------------------------------------------

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80e::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "192.0.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "198.19.255.255",
    "192.88.99.1",
    "::",
    "::1",
    "fe80::1",
    "febf::1",
    "fec0::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "3fff::1",
    "2001:2::1",  # benchmarking
    "100::1",  # discard prefix
    "5f00::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::8.8.8.8",  # IPv4-compatible is refused even for a public address
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1:7f00:0:100::",  # NAT64 local-use /48 form of 127.0.0.1
    "64:ff9b:1:808:8:800::",  # local-use NAT64 is never public
    "2002:7f00:1::",
    "2002:a00:1::1",
    "2002:a9fe:a9fe::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8 (Teredo refused)
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    assert is_public_address(ip(address))


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_not_public(address: str) -> None:
    assert not is_public_address(ip(address))


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:8.8.8.8", "8.8.8.8"),
        ("::10.0.0.1", "10.0.0.1"),
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b:1:7f00:0:100::", "127.0.0.1"),
        ("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("2002:c0a8:101:1::5", "192.168.1.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # RFC 4380 example
        ("::", None),
        ("::1", None),
        ("2606:4700:4700::1111", None),
        ("fe80::1", None),
    ],
)
def test_embedded_ipv4(address: str, inner: str | None) -> None:
    got = embedded_ipv4(ipaddress.IPv6Address(address))
    assert got == (ip(inner) if inner else None)


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal 127.0.0.1
        "0x7f000001",
        "0x7f.1",
        "0x7F.0x0.0x0.0x1",
        "0177.0.0.1",  # octal
        "0177.1",
        "127.1",
        "127.0.1",
        "017700000001",
        "127.0.0.1.",
        "8.8.8.8.",
        "example.123",  # last label numeric: parsed as IPv4 by browsers
        "a.0x",
    ],
)
def test_check_host_refuses_numeric_forms(host: str) -> None:
    reason = check_host(host)
    assert reason is not None
    assert host in reason


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "::1", "[::ffff:127.0.0.1]", "169.254.169.254", "[fe80::1%eth0]"],
)
def test_check_host_refuses_private_literals(host: str) -> None:
    assert check_host(host) is not None


@pytest.mark.parametrize(
    "host", ["example.com", "8.8.8.8", "[2606:4700:4700::1111]", "123.example.com", "x-0x7f.io"]
)
def test_check_host_allows(host: str) -> None:
    assert check_host(host) is None


@pytest.mark.parametrize("host", ["localhost", "LocalHost.", "a.b.localhost"])
def test_check_host_refuses_localhost_names(host: str) -> None:
    assert check_host(host) is not None
    assert check_host(host, lambda a: a.is_loopback) is None


def test_check_host_custom_filter() -> None:
    only_loopback = lambda a: a.is_loopback  # noqa: E731
    assert check_host("127.0.0.1", only_loopback) is None
    assert check_host("8.8.8.8", only_loopback) is not None
    assert "embeds 127.0.0.1" in (check_host("[64:ff9b::7f00:1]") or "")


def test_parse_ip() -> None:
    assert parse_ip("[::1]") == ip("::1")
    assert parse_ip("fe80::1%eth0") == ip("fe80::1")
    assert parse_ip("example.com") is None
    assert parse_ip("127.1") is None


# --- the real downloader ---------------------------------------------------------


@pytest.fixture
def marker() -> str:
    """A unique query value; the test asserts no request carrying it reached the server."""
    return uuid.uuid4().hex


def reached(media_server: MediaServer, marker: str) -> bool:
    """A request carrying ``marker`` reached the server (other than inside a redirect's ?to=)."""
    return any(
        marker in path and not path.startswith("/redirect") for _, path, _ in media_server.requests
    )


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "LOCALHOST.",
        "media.localhost",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
        "[::127.0.0.1]",
        "[::]",
        "0.0.0.0",
        "0",
    ],
)
async def test_private_targets_refused(
    media_server: MediaServer, marker: str, tmp_path: Path, host: str
) -> None:
    url = f"http://{host}:{media_server.port}/media/clip.mp4?m={marker}"
    async with HttpDownloader() as dl:
        with pytest.raises(BlockedAddressError) as info:
            await dl.fetch(url, tmp_path / "x")
    assert info.value.code == "blocked_address"
    assert info.value.url == url
    assert url in str(info.value)
    assert not info.value.transient
    assert not reached(media_server, marker)
    assert list(tmp_path.iterdir()) == []


def only(address: str):  # type: ignore[no-untyped-def]
    allowed = ip(address)
    return lambda a: a == allowed


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/media/clip.mp4",
        "http://[::1]:{port}/media/clip.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://0x7f.1:{port}/media/clip.mp4",
        "http://2130706433:{port}/media/clip.mp4",
        "http://10.0.0.1/",
    ],
)
async def test_redirect_hop_rechecked(
    media_server: MediaServer, marker: str, tmp_path: Path, target: str
) -> None:
    to = target.format(port=media_server.port) + f"?m={marker}-2"
    first = media_server.url("redirect") + "?to=" + to + f"&m={marker}-1"
    async with HttpDownloader(address_filter=only("127.0.0.1")) as dl:
        with pytest.raises(BlockedAddressError) as info:
            await dl.fetch(first, tmp_path / "x")
    assert info.value.url == first
    assert "redirected to" in str(info.value)
    assert any(f"{marker}-1" in p for _, p, _ in media_server.requests)  # first hop fetched
    assert not reached(media_server, f"{marker}-2")


async def test_redirect_within_policy_allowed(media_server: MediaServer, tmp_path: Path) -> None:
    url = media_server.url("redirect") + "?to=" + media_server.media_url("logo.png")
    async with HttpDownloader(address_filter=only("127.0.0.1")) as dl:
        assert await dl.fetch(url, tmp_path / "logo.png") > 0


async def test_names_are_checked_on_resolved_addresses(
    media_server: MediaServer, tmp_path: Path
) -> None:
    seen: list[IPAddress] = []

    def loopback_only(a: IPAddress) -> bool:
        seen.append(a)
        return a.is_loopback

    url = f"http://localhost:{media_server.port}/media/logo.png"
    async with HttpDownloader(address_filter=loopback_only) as dl:
        assert await dl.fetch(url, tmp_path / "logo.png") > 0
    assert seen
    assert all(a.is_loopback for a in seen)


class ScriptedDNS(AbstractResolver):
    """A stand-in for DNS: answers from a script, one list of addresses per lookup."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        addresses = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_if_any_address_blocked() -> None:
    resolver = AddressFilteringResolver(inner=ScriptedDNS(["8.8.8.8", "127.0.0.1"]))
    with pytest.raises(OSError, match=r"127\.0\.0\.1"):
        await resolver.resolve("mixed.example", 80)
    ok = AddressFilteringResolver(inner=ScriptedDNS(["8.8.8.8", "2606:4700:4700::1111"]))
    assert [r["host"] for r in await ok.resolve("fine.example", 80)] == [
        "8.8.8.8",
        "2606:4700:4700::1111",
    ]
    empty = AddressFilteringResolver(inner=ScriptedDNS([]))
    with pytest.raises(OSError):
        await empty.resolve("empty.example", 80)


async def test_dns_rebinding_caught_at_connect(
    media_server: MediaServer, marker: str, tmp_path: Path
) -> None:
    """The name first resolves to the allowed 127.0.0.1, then to 127.0.0.2: refused."""
    dns = ScriptedDNS(["127.0.0.1"], ["127.0.0.2"])
    resolver = AddressFilteringResolver(only("127.0.0.1"), inner=dns)
    # force_close: no pooled keep-alive connection, so the second fetch connects anew
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        dl = HttpDownloader(address_filter=only("127.0.0.1"), session=session)
        base = f"http://rebind.example:{media_server.port}/media/logo.png?m={marker}"
        assert await dl.fetch(base + "-1", tmp_path / "a") > 0
        with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.2"):
            await dl.fetch(base + "-2", tmp_path / "b")
    assert dns.lookups == ["rebind.example", "rebind.example"]
    assert reached(media_server, f"{marker}-1")
    assert not reached(media_server, f"{marker}-2")


async def test_passed_in_plain_session_gets_preflight_check(
    media_server: MediaServer, marker: str, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        dl = HttpDownloader(session=session)
        with pytest.raises(BlockedAddressError):
            await dl.fetch(
                f"http://localhost:{media_server.port}/media/logo.png?m={marker}", tmp_path / "a"
            )
    assert not reached(media_server, marker)


async def test_allow_private_networks(media_server: MediaServer, tmp_path: Path) -> None:
    async with HttpDownloader(allow_private_networks=True) as dl:
        assert await dl.fetch(media_server.media_url("logo.png"), tmp_path / "a") > 0


async def test_url_with_credentials_refused(tmp_path: Path) -> None:
    async with HttpDownloader(allow_private_networks=True) as dl:
        with pytest.raises(DownloadError) as info:
            await dl.fetch("http://admin:hunter2@127.0.0.1:9/x", tmp_path / "a")
    assert info.value.code == "url_not_allowed"


async def test_redirect_to_credentials_refused(media_server: MediaServer, tmp_path: Path) -> None:
    async def creds(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://u:pw@127.0.0.1:{media_server.port}/media/logo.png")

    name = uuid.uuid4().hex
    media_server.handlers[name] = creds
    try:
        async with HttpDownloader(allow_private_networks=True) as dl:
            with pytest.raises(DownloadError) as info:
                await dl.fetch(media_server.url(f"x/{name}"), tmp_path / "a")
    finally:
        media_server.handlers.pop(name, None)
    assert info.value.code == "url_not_allowed"
    assert "pw" not in str(info.value)
